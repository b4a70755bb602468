"""CALLIN_EMBED_ORIGINS: read from the environment as a JSON list or comma-separated, normalised to what browsers send
in Origin, refused with a reason when it is not an origin; and which origins the list allows."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config import Settings
from signaling.cors import EmbedOrigins, is_caller_facing


def from_env(monkeypatch: pytest.MonkeyPatch, value: str, **kw: object) -> Settings:
    monkeypatch.setenv("CALLIN_EMBED_ORIGINS", value)
    return Settings(**kw)


@pytest.mark.parametrize("value", [
    "https://Shop.Example.com:443, http://localhost:3000 ,https://*.example.org",
    '["https://shop.example.com/", "http://localhost:3000", "https://*.EXAMPLE.org:443"]',
])
def test_comma_separated_or_json_normalised(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    assert from_env(monkeypatch, value).embed_origins == [
        "https://shop.example.com", "http://localhost:3000", "https://*.example.org"]


def test_unset_means_every_origin_in_demo_mode_and_none_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALLIN_EMBED_ORIGINS", raising=False)
    assert Settings().embed_origins is None and Settings().embedding_origins == []
    assert Settings(demo=True).embedding_origins == ["*"]
    assert from_env(monkeypatch, "", demo=True).embedding_origins == []  # set, but empty: none, even in demo mode
    assert from_env(monkeypatch, "*").embedding_origins == ["*"]  # every origin only when written out
    assert from_env(monkeypatch, "https://a.example", demo=True).embedding_origins == ["https://a.example"]


@pytest.mark.parametrize("value, reason", [
    ("https://shop.example.com/widget", "no path"),
    ("https://shop.example.com?x=1", "no path, query"),
    ("ftp://shop.example.com", "http(s)://host[:port]"),
    ("shop.example.com", "http(s)://host[:port]"),
    ("https://user@shop.example.com", "user name"),
    ("https://shop.*.com", "scheme://*.domain"),
    ("https://*.com.*", "scheme://*.domain"),
    ("https://*", "scheme://*.domain"),
    ("https://shop.example.com:99999", "port"),
    ('["https://a.example", ', "not a valid JSON list"),
])
def test_what_is_not_an_origin_is_refused_with_a_reason(monkeypatch: pytest.MonkeyPatch, value: str,
                                                          reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        from_env(monkeypatch, value)
    assert reason in str(info.value)


def test_which_origins_are_allowed() -> None:
    origins = EmbedOrigins.of({"http://127.0.0.1:8080"},
                              ["https://shop.example.com", "https://*.example.org", "http://*.dev.test:3000"])
    allowed = ["http://127.0.0.1:8080", "https://shop.example.com", "https://SHOP.example.com/", "https://a.example.org",
               "https://a.b.example.org", "http://x.dev.test:3000"]
    refused = ["https://example.org", "http://a.example.org", "https://a.example.org:8443", "https://aexample.org",
               "https://example.org.evil.com", "http://x.dev.test", "https://shop.example.com:444", "null",
               "https://evil.example", "", "not an origin"]
    assert [o for o in allowed if not origins.allows(o)] == []
    assert [o for o in refused if origins.allows(o)] == []
    anything = EmbedOrigins.of(set(), ["*"])
    assert anything.allows("https://evil.example") and anything.allows("null")
    assert not EmbedOrigins.of(set(), []).allows("https://shop.example.com")


def test_only_the_caller_facing_paths_are_cross_origin() -> None:
    for path in ("/static/caller/callin-widget.js", "/static/caller/icons.js", "/api/v1/calls/abc/attachments",
                 "/api/v1/calls/abc/attachments/0123456789abcdef", "/api/v1/demo/token"):
        assert is_caller_facing(path), path
    for path in ("/static/console/console.js", "/static/caller/../console/console.js", "/console/", "/ws/caller",
                 "/api/v1/calls", "/api/v1/calls/abc", "/api/v1/calls/abc/snapshot", "/api/v1/calls/abc/history",
                 "/api/v1/agent/login", "/api/v1/users", "/api/v1/webhooks", "/metrics", "/static/caller/",
                 "/static/caller/sub/x.js", "/api/v1/calls/abc/attachments/x/y"):
        assert not is_caller_facing(path), path
