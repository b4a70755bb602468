/**
 * The agent's devices, chosen and tested at sign-in (a user gesture, so that Accept does not stop to ask):
 * microphone, camera, speaker.
 */

import { icon } from "../../caller/icons.js";
import { AUDIO_CONSTRAINTS } from "../../caller/callin-client.js";
import { $ } from "../lib/dom.js";

const DEVICE_KEYS = { mic: "callin.agent.mic", camera: "callin.agent.camera", speaker: "callin.agent.speaker" };

export function createDevices(app) {
  // ------------------------------------------------------------------------------------------------ devices
  // Chosen at sign-in and tested there (a user gesture), so that Accept does not stop to ask for the microphone.
  const devices = {
    mic: localStorage.getItem(DEVICE_KEYS.mic) ?? "",
    camera: localStorage.getItem(DEVICE_KEYS.camera) ?? "",
    speaker: localStorage.getItem(DEVICE_KEYS.speaker) ?? "",
    test: null, // {stream, ctx, timer, stop}
    level: 0, // the loudest microphone level seen in the last test (RMS, 0-1)
  };

  function audioConstraints() {
    return devices.mic ? { ...AUDIO_CONSTRAINTS, deviceId: { exact: devices.mic } } : AUDIO_CONSTRAINTS;
  }

  function videoConstraints() {
    const base = { width: { ideal: 640 }, height: { ideal: 480 } };
    return devices.camera ? { ...base, deviceId: { exact: devices.camera } } : base;
  }

  function routeToSpeaker(audio) {
    if (devices.speaker && audio.setSinkId) audio.setSinkId(devices.speaker).catch(() => {});
  }

  function fillDevices(id, list, chosen, noun) {
    const select = $(id);
    select.replaceChildren(new Option("System default", ""));
    list
      .filter((d) => d.deviceId && d.deviceId !== "default")
      .forEach((d, i) => select.append(new Option(d.label || `${noun} ${i + 1}`, d.deviceId)));
    select.value = [...select.options].some((o) => o.value === chosen) ? chosen : "";
  }

  /** Whether the microphone is allowed yet (asked at Accept otherwise): said in the devices card. */
  async function checkMicPermission() {
    const status = await navigator.permissions?.query({ name: "microphone" }).catch(() => null);
    if (!status || devices.test) return;
    const say = () => {
      if (devices.test) return;
      if (status.state === "granted") devStatus("Microphone allowed: Accept connects you at once.");
      else if (status.state === "denied") devStatus("The microphone is blocked for this site: callers would not hear you. Allow it (the icon at the left of the address bar).", true);
      else devStatus("Test your microphone now, so that Accept does not stop to ask for it.");
    };
    status.onchange = say;
    say();
  }

  async function listDevices() {
    const all = (await navigator.mediaDevices?.enumerateDevices?.().catch(() => null)) ?? [];
    fillDevices("dev-mic", all.filter((d) => d.kind === "audioinput"), devices.mic, "Microphone");
    fillDevices("dev-camera", all.filter((d) => d.kind === "videoinput"), devices.camera, "Camera");
    fillDevices("dev-speaker", all.filter((d) => d.kind === "audiooutput"), devices.speaker, "Speaker");
    $("dev-speaker").disabled = !("setSinkId" in HTMLMediaElement.prototype);
  }

  function chooseDevice(kind, value) {
    devices[kind] = value;
    localStorage.setItem(DEVICE_KEYS[kind], value);
    if (kind === "speaker") for (const id of ["remote-audio", "remote-audio-2"]) document.getElementById(id) && routeToSpeaker(document.getElementById(id));
    if (devices.test) (devices.test.kind === "mic" ? testMicrophone : testCamera)();
  }

  function devStatus(text, bad = false) {
    const el = $("dev-status");
    el.textContent = text;
    el.classList.toggle("bad", bad);
  }

  function stopDeviceTest() {
    const t = devices.test;
    devices.test = null;
    if (!t) return;
    clearInterval(t.timer);
    clearTimeout(t.stop);
    for (const track of t.stream.getTracks()) track.stop();
    t.ctx?.close().catch(() => {});
    $("dev-level-bar").style.width = "0";
    $("dev-preview").srcObject = null;
    $("dev-preview").hidden = true;
  }

  function blockedText(e, what) {
    return e?.name === "NotAllowedError"
      ? `The ${what} is blocked for this site: allow it (the icon at the left of the address bar), then test again.`
      : `No ${what} could be opened${e?.name === "NotFoundError" ? ": none is connected" : " (it may be in use by another app)"}.`;
  }

  async function testMicrophone() {
    stopDeviceTest();
    devStatus("Asking for the microphone…");
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: audioConstraints() });
    } catch (e) {
      devStatus(blockedText(e, "microphone"), true);
      return;
    }
    const ctx = new AudioContext();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    ctx.createMediaStreamSource(stream).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    devices.level = 0;
    const timer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const v of samples) sum += v * v;
      const rms = Math.sqrt(sum / samples.length);
      devices.level = Math.max(devices.level, rms);
      $("dev-level-bar").style.width = `${Math.min(100, Math.round(rms * 400))}%`;
    }, 100);
    devices.test = { kind: "mic", stream, ctx, timer, stop: setTimeout(stopDeviceTest, 10000) };
    devStatus(`Microphone allowed (${stream.getAudioTracks()[0]?.label || "default"}). Speak: the bar moves when it hears you.`);
    listDevices(); // the names of the devices are readable once one is allowed
  }

  async function testCamera() {
    stopDeviceTest();
    devStatus("Asking for the camera…");
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: videoConstraints() });
    } catch (e) {
      devStatus(blockedText(e, "camera"), true);
      return;
    }
    const preview = $("dev-preview");
    preview.srcObject = stream;
    preview.hidden = false;
    preview.play().catch(() => {});
    devices.test = { kind: "camera", stream, ctx: null, timer: null, stop: setTimeout(stopDeviceTest, 10000) };
    devStatus(`Camera allowed (${stream.getVideoTracks()[0]?.label || "default"}). The preview stops in 10 s.`);
    listDevices();
  }

  function audioElement(id) {
    let audio = document.getElementById(id);
    if (!audio) {
      audio = document.createElement("audio");
      audio.id = id;
      audio.autoplay = true;
      document.body.append(audio);
      routeToSpeaker(audio);
    }
    return audio;
  }

  /** The loudest microphone level seen in the last test (RMS, 0-1). */
  const micLevel = () => devices.level;

  /** Wire this view's controls (once, at start). */
  function mount() {
    $("dev-test-mic").addEventListener("click", testMicrophone);
    $("dev-test-camera").addEventListener("click", testCamera);
    for (const kind of ["mic", "camera", "speaker"]) $(`dev-${kind}`).addEventListener("change", (e) => chooseDevice(kind, e.target.value));
    listDevices();
    navigator.mediaDevices?.addEventListener?.("devicechange", listDevices);
  }

  return { audioConstraints, videoConstraints, routeToSpeaker, fillDevices, checkMicPermission, listDevices, chooseDevice, devStatus, stopDeviceTest, blockedText, testMicrophone, testCamera, audioElement, micLevel, mount };
}
