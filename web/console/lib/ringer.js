/** The ring: a soft two-tone ring made with WebAudio (no audio files), on or off by the agent's choice. */

export const SOUND_KEY = "callin.agent.sound";

/** A soft two-tone ring made with WebAudio (no audio files). */
export class Ringer {
  #ctx = null;
  #timer = null;
  enabled = localStorage.getItem(SOUND_KEY) !== "off";

  onchange = null; // called when the browser allows or blocks the ring sound

  unlock() {
    try {
      if (!this.#ctx) {
        this.#ctx = new AudioContext();
        this.#ctx.addEventListener("statechange", () => this.onchange?.());
      }
      if (this.#ctx.state === "suspended") this.#ctx.resume().then(() => this.onchange?.(), () => {});
    } catch {
      /* no audio */
    }
    this.onchange?.();
  }

  get blocked() {
    return !this.#ctx || this.#ctx.state !== "running";
  }

  start() {
    this.stop();
    if (!this.enabled) return;
    this.unlock();
    const ring = () => {
      if (!this.#ctx || this.#ctx.state !== "running") return;
      const t0 = this.#ctx.currentTime + 0.02;
      for (const [offset, freq] of [[0, 880], [0.18, 660], [0.5, 880], [0.68, 660]]) this.#tone(t0 + offset, freq);
    };
    ring();
    this.#timer = setInterval(ring, 2200);
  }

  #tone(at, freq) {
    const osc = this.#ctx.createOscillator();
    const gain = this.#ctx.createGain();
    osc.type = "sine";
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0, at);
    gain.gain.linearRampToValueAtTime(0.18, at + 0.015);
    gain.gain.exponentialRampToValueAtTime(0.001, at + 0.16);
    osc.connect(gain).connect(this.#ctx.destination);
    osc.start(at);
    osc.stop(at + 0.18);
  }

  stop() {
    clearInterval(this.#timer);
    this.#timer = null;
  }
}
