"""The webhook signature check a receiver runs (gateway.store.webhooks.verify_signature and the copy in docs/api.md):
forged headers, whatever characters they hold, give False and never raise."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.store.webhooks import sign, verify_signature

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def docs_example() -> Callable[..., bool]:
    text = DOCS.read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def verify_callin_signature" in b)
    namespace: dict[str, object] = {}
    exec(compile(block, str(DOCS), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace["verify_callin_signature"]  # type: ignore[return-value]


@pytest.fixture(params=["module", "docs"])
def verify(request: pytest.FixtureRequest) -> Callable[..., bool]:
    return verify_signature if request.param == "module" else docs_example()


def test_a_good_signature_passes(verify: Callable[..., bool]) -> None:
    body = b'{"event":"call.ended"}'
    assert verify("whsec_x", sign("whsec_x", int(time.time()), body), body)


@pytest.mark.parametrize("header", [
    "t={now},v1=\u00e9\u00e9\u00e9",  # non-ASCII signature
    "t={now},v1=\ud800",  # lone surrogate
    "t={now},v1=" + "\u0663" * 64,  # Arabic-Indic digits
    "t=\u0661\u0662\u0663,v1=abc",  # a timestamp int() would read
    "t=1_700_000_000,v1=abc",
    "t=,v1=",
    "v1=abc",
    "",
    "garbage",
])
def test_forged_headers_are_false_not_errors(verify: Callable[..., bool], header: str) -> None:
    assert verify("whsec_x", header.replace("{now}", str(int(time.time()))), b"{}") is False
