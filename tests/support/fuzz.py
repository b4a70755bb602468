"""A seeded generator of protocol messages: valid messages of each type, then mutated (fields dropped, added or given
values of the wrong kind; the type swapped; the JSON text truncated, nested, given NaN or unpaired surrogates)."""

from __future__ import annotations

import json
import random
from typing import Any

CALLER_TYPES = ["call.start", "sdp.offer", "ice.candidate", "call.hangup", "ping", "chat.send", "content.status",
                "callback.request", "message.leave", "call.rejoin", "hello", "bye"]
AGENT_TYPES = ["agent.status", "call.accept", "call.decline", "sdp.offer", "ice.candidate", "call.hangup", "ping",
               "call.hold", "call.resume", "call.transfer", "transfer.complete", "transfer.cancel", "supervise.start",
               "supervise.stop", "content.push", "chat.send", "wallboard.subscribe", "wallboard.unsubscribe",
               "wrap_up.submit", "hello", "bye"]
RARE = {"bye": 0.02, "hello": 0.3}  # relative weight (others 1): bye ends the session, so it is sent rarely


class Fuzzer:
    def __init__(self, seed: int, sdp: str) -> None:
        self.rng = random.Random(seed)
        self.sdp = sdp
        self.call_id = "0" * 16
        self.content_id = "0" * 12
        self.attachment_id = "0123456789abcdef"

    # -- values
    def text(self, limit: int = 40) -> str:
        r = self.rng
        alphabet = "abc XYZ 019 _-.:/\\\"'{}[]<>&%$é€中😀\u0000\t\n\u202e\ufeff"
        return "".join(r.choice(alphabet) for _ in range(r.randint(0, limit)))

    def value(self, depth: int = 0) -> Any:
        r = self.rng
        choice = r.randint(0, 15)
        if choice == 0:
            return None
        if choice == 1:
            return r.choice([True, False])
        if choice == 2:
            return r.choice([0, -1, 1, 2**31, -(2**63), 10**30, 17])
        if choice == 3:
            return r.choice([0.5, -1e308, 1e308, 3.14, -0.0, 1e-320])
        if choice == 4:
            return ""
        if choice == 5:
            return "x" * r.choice([65, 129, 2001, 9000, 40_000])
        if choice == 6:
            return self.text()
        if choice == 7 and depth < 3:
            return [self.value(depth + 1) for _ in range(r.randint(0, 4))]
        if choice == 8 and depth < 3:
            return {self.text(8): self.value(depth + 1) for _ in range(r.randint(0, 4))}
        if choice == 9:
            return self.call_id
        if choice == 10:
            return r.choice(["voice", "video", "screen", "available", "away", "busy", "blind", "warm", "monitor",
                             "whisper", "barge", "link", "image", "text", "seen", "opened", "dismissed"])
        if choice == 11:
            nested: Any = 1
            for _ in range(r.randint(2, 60)):
                nested = [nested]
            return nested
        if choice == 12:
            return self.sdp
        if choice == 13:
            return "candidate:1 1 udp 2130706431 127.0.0.1 " + str(r.randint(0, 70000)) + " typ host"
        if choice == 14:
            return self.attachment_id
        return self.text(200)

    # -- valid messages
    def valid(self, kind: str, request_id: str) -> dict[str, Any]:
        r = self.rng
        base: dict[str, Any] = {"type": kind, "id": request_id}
        call = {"call_id": self.call_id}
        extra: dict[str, Any] = {
            "hello": {"token": "x" * r.randint(1, 40)},
            "call.start": {"call_type": r.choice(["voice", "video", "screen"]),
                           "location": {"lat": r.uniform(-90, 90), "lon": r.uniform(-180, 180),
                                        "accuracy_m": r.uniform(0, 100), "timestamp": 1_790_000_000.0},
                           "context": {"screen": "checkout", "steps": ["a", "b"], "crm": {"k": 1, "v": "x"}}},
            "sdp.offer": {**call, "sdp": self.sdp},
            "ice.candidate": {**call, "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
                              "sdp_mid": "0", "sdp_mline_index": 0},
            "call.hangup": call,
            "chat.send": {**call, "text": self.text(100) or "hi"},
            "content.status": {**call, "content_id": self.content_id, "status": r.choice(["seen", "opened"])},
            "callback.request": {**call, "phone": "+49 30 1234567"},
            "message.leave": {**call, "text": "please call back"},
            "call.rejoin": call,
            "agent.status": {"status": r.choice(["available", "away"])},
            "call.accept": call,
            "call.decline": call,
            "call.hold": call,
            "call.resume": call,
            "call.transfer": {**call, "mode": r.choice(["blind", "warm"]), "to_agent": r.choice(["alice", "bob"])},
            "transfer.complete": call,
            "transfer.cancel": call,
            "supervise.start": {**call, "mode": r.choice(["monitor", "whisper", "barge"])},
            "supervise.stop": call,
            "content.push": {**call, "kind": "link", "url": "https://example.com/help", "title": "Help"},
            "wrap_up.submit": {**call, "disposition": "resolved", "notes": self.text(50)},
        }.get(kind, {})
        return base | extra

    # -- mutations
    def mutate(self, message: dict[str, Any], kinds: list[str]) -> dict[str, Any]:
        r = self.rng
        message = dict(message)
        for _ in range(r.choice([0, 0, 1, 1, 2, 3])):
            op = r.randint(0, 5)
            keys = list(message)
            if op == 0 and keys:
                message.pop(r.choice(keys))
            elif op == 1:
                message[r.choice(["extra", "identity", "role", "__proto__", self.text(6)])] = self.value()
            elif op in (2, 3) and keys:
                message[r.choice(keys)] = self.value()
            elif op == 4:
                message["type"] = r.choice(kinds + AGENT_TYPES + ["teleport", "", "error", "welcome", "call.queued"])
            else:
                message["id"] = self.value()
        return message

    def raw(self, message: dict[str, Any]) -> str | bytes:
        r = self.rng
        text = json.dumps(message, ensure_ascii=r.random() < 0.5)
        roll = r.random()
        if roll < 0.03:
            return text[: r.randint(0, max(0, len(text) - 1))]  # truncated
        if roll < 0.05:
            return "[" * r.choice([100, 1000, 20_000]) + "]" * r.choice([0, 100, 20_000])
        if roll < 0.07:
            return text.replace('"id": ', '"id": NaN, "x": ', 1) if '"id": ' in text else text + "NaN"
        if roll < 0.09 and len(text) > 2:
            return text[:-1] + ', "n": ' + r.choice(["NaN", "Infinity", "-Infinity", "1e999", "-1e400"]) + "}"
        if roll < 0.11:
            return text.replace('"', '"\\ud800', 1 + r.randint(0, 3))
        if roll < 0.12:
            return bytes(r.getrandbits(8) for _ in range(r.randint(0, 64)))  # a binary frame
        if roll < 0.13:
            return text[:-1] + ', "type": "ping"}' if len(text) > 2 else text  # a duplicate key
        if roll < 0.14:
            return json.dumps([message])
        if roll < 0.145:
            return json.dumps({"type": "ping", "id": "big", "pad": "x" * 70_000})
        return text

    def message(self, kinds: list[str], request_id: str) -> tuple[str, str | bytes]:
        weights = [RARE.get(k, 1.0) for k in kinds]
        kind = self.rng.choices(kinds, weights)[0]
        message = self.mutate(self.valid(kind, request_id), kinds)
        return str(message.get("type")), self.raw(message)
