"""An HTTP recognition service: each utterance is POSTed as a WAV file (16 kHz mono, 16-bit) to a URL, which
answers JSON {"text": "...", "words": [{"word": "...", "start": s, "end": s}, ...]} ("words" optional).

Requests run in a thread (the standard library's client; the engine never imports aiohttp), one at a time per
engine so that one slow service cannot pile up requests. Only final results: a partial would cost a request.
"""

from __future__ import annotations

import asyncio
import io
import json
import urllib.error
import urllib.request
import wave
from typing import Any

from .engine import SAMPLE_RATE, EngineFailed, Recognition, Word

MAX_RESPONSE_BYTES = 256 * 1024


def wav_bytes(pcm: bytes) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm)
    return buffer.getvalue()


def parse_result(body: bytes) -> Recognition:
    try:
        data: Any = json.loads(body)
    except ValueError:
        raise EngineFailed("the recognition service did not answer JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("text", ""), str):
        raise EngineFailed("the recognition service's answer has no text")
    words: list[Word] = []
    for item in data.get("words") or []:
        try:
            words.append(Word(text=str(item["word"]), start_s=float(item["start"]), end_s=float(item["end"])))
        except (KeyError, TypeError, ValueError):
            raise EngineFailed("the recognition service's words are malformed") from None
    return Recognition(text=" ".join(data.get("text", "").split()), words=tuple(words))


class HttpEngine:
    name = "http"
    partials = False

    def __init__(self, url: str, timeout_s: float = 10.0, token: str | None = None) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._token = token
        self._one_at_a_time = asyncio.Lock()

    @property
    def busy(self) -> bool:
        return self._one_at_a_time.locked()

    def _post(self, body: bytes) -> bytes:
        headers = {"Content-Type": "audio/wav", "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - a set URL
                return response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise EngineFailed(f"the recognition service answered {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise EngineFailed(f"the recognition service is unreachable: {exc}") from None

    async def recognize(self, pcm: bytes, final: bool) -> Recognition:
        async with self._one_at_a_time:
            body = await asyncio.to_thread(self._post, wav_bytes(pcm))
        if len(body) > MAX_RESPONSE_BYTES:
            raise EngineFailed("the recognition service's answer is too large")
        return parse_result(body)

    def warm(self) -> None:
        return None

    async def close(self) -> None:
        return None
