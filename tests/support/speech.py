"""Speech for transcript tests and the benchmark: espeak-ng (Debian's, installed by scripts/setup.sh --test) speaks a
phrase to a WAV file, and a SpeechTrack sends it as a participant's microphone (48 kHz mono, 20 ms frames), silence
around it. Phrases pocketsphinx recognises reliably from this voice are listed in PHRASES with the words to expect."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import av

from tests.support.media import ToneAudioTrack

VOICE = "en-us+f3"
SPEED = 140
RATE = 48000
FRAME_BYTES = 960 * 2  # 20 ms of 48 kHz mono s16

# phrase -> words its recognition must contain (a robust subset: espeak-ng's voice is far from a person's; checked
# through an Opus round trip, which changes what pocketsphinx hears)
PHRASES = {
    "please call me back tomorrow morning": {"call", "back"},
    "i want to cancel my subscription": {"cancel"},
    "good morning": {"good", "morning"},
}
CARD_DIGITS = "4242424242424242"  # Luhn-valid (a well-known test card)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def synthesize(text: str, cache: Path | None = None) -> bytes:
    """The phrase spoken by espeak-ng: 48 kHz mono signed 16-bit PCM."""
    folder = cache or Path(tempfile.gettempdir()) / "callin-speech"
    folder.mkdir(parents=True, exist_ok=True)
    wav = folder / f"{abs(hash((text, VOICE, SPEED)))}.wav"
    if not wav.exists():
        subprocess.run(["espeak-ng", "-v", VOICE, "-s", str(SPEED), "-w", str(wav), text], check=True,
                       capture_output=True, timeout=60)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    out = bytearray()
    with av.open(str(wav)) as container:
        for frame in container.decode(audio=0):
            for resampled in resampler.resample(frame):
                out += bytes(resampled.planes[0])[: resampled.samples * 2]
    return bytes(out)


def spoken_digits(digits: str) -> str:
    names = "zero one two three four five six seven eight nine".split()
    return " ".join(names[int(d)] for d in digits)


class SpeechTrack(ToneAudioTrack):
    """A microphone that is silent until `say(pcm)`; `said_at[n]` is when utterance n's last speech sample was sent
    (time.monotonic()), for latency measurements."""

    def __init__(self) -> None:
        super().__init__(440.0)
        self._queue: list[tuple[bytes, int]] = []  # (speech then its pause, where the speech ends)
        self._current = b""
        self._speech_end = 0
        self._offset = 0
        self.said_at: list[float] = []

    def say(self, pcm: bytes, pause_s: float = 1.0) -> None:
        """Speak `pcm` once what was said before is over, then be silent `pause_s` (the end of an utterance)."""
        self._queue.append((pcm + bytes(int(RATE * pause_s) * 2), len(pcm)))

    @property
    def saying(self) -> bool:
        return bool(self._current) or bool(self._queue)

    def samples_from(self, first: int) -> bytes:
        if self._offset >= len(self._current):
            self._current, self._offset = b"", 0
            if self._queue:
                self._current, self._speech_end = self._queue.pop(0)
        if not self._current:
            return bytes(FRAME_BYTES)
        chunk = self._current[self._offset:self._offset + FRAME_BYTES]
        before, self._offset = self._offset, self._offset + FRAME_BYTES
        if before < self._speech_end <= self._offset:
            self.said_at.append(time.monotonic())
        return chunk + bytes(FRAME_BYTES - len(chunk))
