/**
 * The snapshot dialog: a still of the caller's video, annotated with a pen and pushed to the caller.
 */

import { CallinError } from "../../caller/callin-client.js";
import { $, toast, formError } from "../lib/dom.js";
import { sleep } from "../lib/format.js";
import { api, uploadFile } from "../lib/api.js";

const PEN_COLOURS = [["#ef4444", "Red"], ["#facc15", "Yellow"], ["#22c55e", "Green"], ["#3b82f6", "Blue"], ["#ffffff", "White"]];
const SNAPSHOT_FAILED = {
  no_video: "The caller isn't sending video right now, so there is nothing to take a picture of.",
  snapshot_failed: "No picture could be taken from the caller's video.",
};

export function createSnapshot(app) {
  const { state, views } = app;

  const snap = { image: null, strokes: [], colour: PEN_COLOURS[0][0], drawing: null, attachment: null };

  async function openSnapshot() {
    const call = state.call;
    if (!call || $("snapshot-button").disabled) return;
    formError("snap-error", null);
    snap.image = null;
    snap.strokes = [];
    snap.attachment = null;
    $("snap-send").disabled = true;
    const canvas = $("snap-canvas");
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    $("snapshot-dialog").showModal();
    await loadSnapshot(call);
  }

  /** Take a still of the caller's video: one quiet retry (a keyframe may be on its way), then "Try again". */
  async function loadSnapshot(call) {
    $("snap-loading").hidden = false;
    $("snap-retry").hidden = true;
    $("snap-loading-text").textContent = "Taking a snapshot…";
    let failure = null;
    for (let attempt = 0; attempt < 2; attempt += 1) {
      if (attempt) {
        $("snap-loading-text").textContent = "Trying once more…";
        await sleep(800);
      }
      if (state.call !== call || !$("snapshot-dialog").open) return;
      try {
        const still = await api(`/api/v1/calls/${encodeURIComponent(call.id)}/snapshot`, { method: "POST" });
        const response = await fetch(still.url);
        if (!response.ok) throw new CallinError("snapshot_failed", "The snapshot could not be loaded.");
        const bitmap = await createImageBitmap(await response.blob());
        if (state.call !== call || !$("snapshot-dialog").open) return;
        snap.attachment = still;
        snap.image = bitmap;
        const canvas = $("snap-canvas");
        canvas.width = bitmap.width;
        canvas.height = bitmap.height;
        canvas.style.width = `min(100%, ${((62 * bitmap.width) / bitmap.height).toFixed(2)}vh)`; // keeps the picture's shape
        $("snap-loading").hidden = true;
        $("snap-send").disabled = false;
        redrawSnapshot();
        return;
      } catch (e) {
        failure = e;
      }
    }
    $("snap-loading-text").textContent = SNAPSHOT_FAILED[failure?.code] ?? failure?.reason ?? "The snapshot failed.";
    $("snap-retry").hidden = false;
    $("snap-retry").focus();
  }

  function redrawSnapshot() {
    const canvas = $("snap-canvas");
    const g = canvas.getContext("2d");
    g.clearRect(0, 0, canvas.width, canvas.height);
    if (snap.image) g.drawImage(snap.image, 0, 0);
    g.lineCap = "round";
    g.lineJoin = "round";
    for (const stroke of snap.strokes) {
      g.strokeStyle = stroke.colour;
      g.lineWidth = Math.max(3, canvas.width / 110);
      g.shadowColor = "rgba(0,0,0,.45)";
      g.shadowBlur = 2;
      g.beginPath();
      stroke.points.forEach(([x, y], i) => (i ? g.lineTo(x, y) : g.moveTo(x, y)));
      if (stroke.points.length === 1) g.lineTo(stroke.points[0][0] + 0.1, stroke.points[0][1]);
      g.stroke();
    }
    g.shadowBlur = 0;
  }

  function canvasPoint(event) {
    const canvas = $("snap-canvas");
    const rect = canvas.getBoundingClientRect();
    return [((event.clientX - rect.left) * canvas.width) / rect.width, ((event.clientY - rect.top) * canvas.height) / rect.height];
  }

  function initSnapshotCanvas() {
    const canvas = $("snap-canvas");
    canvas.addEventListener("pointerdown", (e) => {
      if (!snap.image) return;
      canvas.setPointerCapture(e.pointerId);
      snap.drawing = { colour: snap.colour, points: [canvasPoint(e)] };
      snap.strokes.push(snap.drawing);
      redrawSnapshot();
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!snap.drawing) return;
      snap.drawing.points.push(canvasPoint(e));
      redrawSnapshot();
    });
    const stop = () => (snap.drawing = null);
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointercancel", stop);
    const swatches = $("snap-colors");
    swatches.innerHTML = PEN_COLOURS.map(([c, name], i) => `<button type="button" role="radio" aria-checked="${i === 0}" aria-label="${name}" title="${name}" data-colour="${c}" style="--swatch:${c}"></button>`).join("");
    swatches.addEventListener("click", (e) => {
      const b = e.target.closest("button");
      if (!b) return;
      snap.colour = b.dataset.colour;
      for (const x of swatches.querySelectorAll("button")) x.setAttribute("aria-checked", String(x === b));
    });
    $("snap-undo").addEventListener("click", () => {
      snap.strokes.pop();
      redrawSnapshot();
    });
    $("snap-clear").addEventListener("click", () => {
      snap.strokes = [];
      redrawSnapshot();
    });
    $("snap-close").addEventListener("click", () => $("snapshot-dialog").close());
    $("snap-send").addEventListener("click", sendSnapshot);
  }

  async function sendSnapshot() {
    const call = state.call;
    if (!call || !snap.image) return;
    const button = $("snap-send");
    button.disabled = true;
    formError("snap-error", null);
    try {
      const blob = await new Promise((resolve) => $("snap-canvas").toBlob(resolve, "image/png"));
      const attachment = await uploadFile(call.id, blob, "snapshot-annotated.png");
      const title = $("snap-title").value.trim() || "From your agent";
      await views.share.pushContent({ kind: "image", title, attachment_id: attachment.id });
      $("snapshot-dialog").close();
      views.stage.selectPane("share");
      toast("The picture is on the caller's screen.");
    } catch (e) {
      formError("snap-error", e.reason ?? "The picture could not be sent.");
    } finally {
      button.disabled = false;
    }
  }

  /** Wire this view's controls (once, at start). */
  function mount() {
    $("snapshot-button").addEventListener("click", openSnapshot);
    $("snap-retry").addEventListener("click", () => state.call && loadSnapshot(state.call));
    initSnapshotCanvas();
  }

  return { openSnapshot, loadSnapshot, redrawSnapshot, canvasPoint, initSnapshotCanvas, sendSnapshot, mount };
}
