/** What the console says about call types, media sources, agent states and endings (one place for the wording). */

import { icon } from "../../caller/icons.js";
import { escapeHtml } from "./format.js";

export const CALL_TYPE = {
  voice: { icon: "phone", label: "Voice call" },
  video: { icon: "video", label: "Video call" },
  screen: { icon: "monitor", label: "Screen share" },
};
// The video each call type starts with (card.media_source, then media.source events, say what it sends now).
const NATURAL_SOURCE = { voice: "none", video: "camera", screen: "screen" };

// What the chip says when the caller's video no longer matches the call type it started with.
const SOURCE_CHIP = { camera: { icon: "video", label: "Camera on" }, screen: { icon: "monitor", label: "Sharing the screen" }, none: { icon: "phone", label: "Voice only" } };
// A video call that goes on without the caller's camera (media_source_reason, from the caller's media.source).
const NO_CAMERA = { camera_blocked: "Voice — caller's camera blocked", camera_unavailable: "Voice — caller has no camera" };

export function callTypeChip(card) {
  const noCamera = card.media_source === "none" && NO_CAMERA[card.media_source_reason];
  if (noCamera) return `${icon("phone", { size: 13 })}${escapeHtml(noCamera)}`;
  const type = CALL_TYPE[card.call_type] ?? CALL_TYPE.voice;
  const source = card.media_source;
  if (source && source !== NATURAL_SOURCE[card.call_type] && SOURCE_CHIP[source]) {
    const now = SOURCE_CHIP[source];
    return `${icon(now.icon, { size: 13 })}${now.label}<small class="chip-was"> · was a ${escapeHtml(type.label.toLowerCase())}</small>`;
  }
  return `${icon(type.icon, { size: 13 })}${type.label}`;
}

export const STATUS_TEXT = { available: "Available", away: "Away", ringing: "Ringing", busy: "On a call", wrap_up: "Wrap-up", offline: "Offline" };

export const END_TEXT = {
  caller_hangup: "The caller hung up",
  agent_hangup: "You hung up",
  caller_disconnected: "The caller's connection was lost",
  agent_disconnected: "Your connection was lost",
  media_failed: "The media connection failed",
  shutdown: "The gateway is shutting down",
  transferred: "You transferred the call",
  consult_ended: "The consult ended",
};

export const WITHDRAWN_TEXT = {
  caller_hangup: "The caller hung up before you answered.",
  caller_disconnected: "The caller's connection was lost before you answered.",
  ring_timeout: "The call rang out and went back to the queue.",
  declined: "Call declined.",
};
