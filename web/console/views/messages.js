/**
 * The agent socket's messages, each handed to the view that owns it.
 */

import { $, toast, banner } from "../lib/dom.js";
import { callTypeChip, WITHDRAWN_TEXT } from "../lib/text.js";

export function createMessages(app) {
  const { state, views } = app;

  function onMessage(message) {
    switch (message.type) {
      case "participant.reconnecting":
        if (message.role === "caller" && state.call?.id === message.call_id) {
          banner("The caller's connection dropped. They may be back in a few seconds…");
        }
        break;
      case "participant.reconnected":
        if (message.role === "caller" && state.call?.id === message.call_id) {
          banner(null);
          toast("The caller is back.");
        }
        break;
      case "agent.status":
        views.status.setStatus(message.status);
        views.wrapup.onWrapUpStatus(message);
        if (message.reason === "missed_call" || message.reason === "ring_timeout") views.ringing.onMissedStatus(message);
        if (message.reason === "signed_in_elsewhere") {
          state.closing = true;
          state.signal?.close();
          banner("You signed in on another console, so this one was disconnected.", { bad: true, action: { label: "Use this console", run: () => views.session.start() } });
        }
        break;
      case "call.offered":
        views.ringing.onOffered(message);
        break;
      case "call.offer_withdrawn":
        if (state.offer?.call_id === message.call_id) {
          const offer = state.offer;
          views.ringing.stopRinging();
          if (message.reason === "ring_timeout") views.ringing.showMissed(offer);
          else {
            views.shell.backToRest();
            toast(WITHDRAWN_TEXT[message.reason] ?? "The call is no longer ringing.");
          }
        }
        break;
      case "call.ended":
        if (state.supervise?.callId === message.call_id) {
          views.supervise.stopSupervising(false);
          toast("The call you were supervising ended.");
        }
        if (state.call?.id === message.call_id) views.wrapup.endCallView(message);
        else if (state.staleCallId === message.call_id) {
          state.staleCallId = null;
          views.shell.show("idle");
          views.card.renderCard(null);
        }
        break;
      case "media.state":
        if (state.call?.id === message.call_id && message.leg === "caller" && message.state === "failed") {
          toast("The caller's connection is failing.", { bad: true });
        }
        if (state.call?.id === message.call_id && message.leg === "caller" && message.state === "disconnected") {
          toast("No media from the caller: waiting for their connection to come back.", { bad: true });
        }
        if (state.call?.id === message.call_id && message.leg === "agent"
            && ["disconnected", "failed", "closed"].includes(message.state)) {
          // The gateway hears nothing from this console (or its side of our peer connection ended): a new one.
          views.call.recoverMedia(state.call, `gateway_${message.state}`);
        }
        break;
      case "media.source":
        if (state.offer?.call_id === message.call_id) Object.assign(state.offer.card, { media_source: message.source, media_source_reason: message.reason ?? null });
        if (state.call?.id === message.call_id) {
          Object.assign(state.call.card, { media_source: message.source, media_source_reason: message.reason ?? null });
          $("call-type").innerHTML = callTypeChip(state.call.card);
          views.stage.updateCallControls(); // the snapshot needs the caller's video
        }
        break;
      case "call.location": {
        // The caller's device answered after the call started: every card of that call says so from now on.
        const cards = new Set([state.offer?.call_id === message.call_id && state.offer.card,
          state.call?.id === message.call_id && state.call.card,
          state.lastCard?.call_id === message.call_id && state.lastCard].filter(Boolean));
        for (const card of cards) card.location = message.location;
        views.card.showLocation(message.call_id, message.location);
        if (state.offer?.call_id === message.call_id && !state.call) views.ringing.onLocation(message);
        break;
      }
      case "media.video":
        if (message.leg === "self" || (message.leg === "agent" && state.call?.id === message.call_id)) {
          toast(message.state === "paused" ? "Your connection is too slow for video: audio only for now."
            : "Video is back.", { bad: message.state === "paused" });
        }
        break;
      case "recording.state":
        views.recording.onState(message);
        break;
      case "call.held":
        if (state.call?.id === message.call_id) {
          state.call.held = message.held;
          views.stage.updateCallControls();
        }
        break;
      case "consult.state":
        views.transfer.onConsultState(message);
        break;
      case "call.transferred":
        if (state.call?.id === message.call_id) views.wrapup.endCallView({ call_id: message.call_id, reason: "transferred", by: "agent", to: message.to });
        break;
      case "content.status":
        views.share.onContentStatus(message);
        break;
      case "chat.message":
        views.chat.onChatMessage(message);
        break;
      case "wallboard":
        views.wallboard.renderWallboard(message);
        break;
      case "transcript.notice":
        views.captions.onNotice(message);
        break;
      case "caption":
        views.captions.onCaption(message);
        break;
      case "error":
        toast(message.reason || message.code, { bad: true });
        break;
      default:
        break;
    }
  }

  return { onMessage };
}
