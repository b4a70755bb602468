from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.auth import AgentDirectory, AgentSessions, CallerTokenVerifier, ConfigError, mint_caller_token
from gateway.config import Settings
from gateway.errors import Unauthorized

SECRET = "unit-secret-0123456789-abcdefghij"


def verifier(**kw) -> CallerTokenVerifier:
    return CallerTokenVerifier(Settings(caller_token_secret=kw.pop("secret", SECRET), **kw))


def claims(**kw):
    base = {"sub": "c1", "aud": "callin", "exp": int(time.time()) + 600}
    base.update(kw)
    return base


def test_hs256_identity_from_claims():
    token = mint_caller_token(SECRET, sub="c1", name="Dana", extra={"email": "d@x.io", "phone_number": "+49", "tier": "gold",
                                                                   "priority": 5, "nested": {"no": 1}})
    identity = verifier().verify(token)
    assert identity.subject == "c1" and identity.name == "Dana" and identity.email == "d@x.io"
    assert identity.phone == "+49" and identity.verified
    assert identity.claims == {"tier": "gold", "priority": 5}  # non-scalar claims are dropped


@pytest.mark.parametrize("alg, make_key", [
    ("RS256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ("ES256", lambda: ec.generate_private_key(ec.SECP256R1())),
])
def test_public_key_algorithms(alg, make_key):
    key = make_key()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    v = CallerTokenVerifier(Settings(caller_token_public_key=pem))
    assert v.verify(jwt.encode(claims(), key, algorithm=alg)).subject == "c1"
    # An HS256 token is refused when only a public key is configured (no algorithm confusion).
    with pytest.raises(Unauthorized) as info:
        v.verify(jwt.encode(claims(), "x" * 32, algorithm="HS256"))
    assert info.value.code == "invalid_token"


# The claims are made when the test runs, not when it is collected: the suite can run longer than a token lives.
@pytest.mark.parametrize("make_claims, code, text", [
    (lambda: claims(exp=int(time.time()) - 100), "token_expired", "expired"),
    (lambda: claims(aud="other"), "invalid_token", "audience"),
    (lambda: {"sub": "c1", "aud": "callin"}, "invalid_token", "'exp'"),
    (lambda: {"aud": "callin", "exp": int(time.time()) + 60}, "invalid_token", "'sub'"),
    (lambda: claims(exp=int(time.time()) + 10 * 24 * 3600), "invalid_token", "lifetime"),
], ids=["expired", "audience", "no-exp", "no-sub", "lifetime"])
def test_refusals(make_claims, code, text):
    with pytest.raises(Unauthorized) as info:
        verifier().verify(jwt.encode(make_claims(), SECRET, algorithm="HS256"))
    assert info.value.code == code and text in info.value.reason


def test_issuer_checked_when_configured():
    v = verifier(caller_token_issuer="https://bank.example")
    with pytest.raises(Unauthorized):
        v.verify(jwt.encode(claims(), SECRET, algorithm="HS256"))
    with pytest.raises(Unauthorized):
        v.verify(jwt.encode(claims(iss="https://evil.example"), SECRET, algorithm="HS256"))
    assert v.verify(jwt.encode(claims(iss="https://bank.example"), SECRET, algorithm="HS256")).issuer == "https://bank.example"


def test_bad_tokens():
    v = verifier()
    for token in ("", "x", "a.b.c", "a" * 10000, jwt.encode(claims(), None, algorithm="none")):
        with pytest.raises(Unauthorized) as info:
            v.verify(token)
        assert info.value.code == "invalid_token"


def test_config_required():
    with pytest.raises(ConfigError):
        CallerTokenVerifier(Settings())
    with pytest.raises(ConfigError):
        CallerTokenVerifier(Settings(caller_token_secret="short"))


def test_agent_passwords_and_sessions():
    settings = Settings(demo=True, caller_token_secret=SECRET)
    directory = AgentDirectory(settings)
    account = directory.check_password("alice", "alice-demo")
    for user, password in (("alice", "nope"), ("mallory", "alice-demo")):
        with pytest.raises(Unauthorized) as info:
            directory.check_password(user, password)
        assert info.value.code == "bad_credentials"
    sessions = AgentSessions(settings, directory)
    assert sessions.verify(sessions.issue(account)).username == "alice"
    with pytest.raises(Unauthorized):
        sessions.verify(mint_caller_token(SECRET, sub="alice"))
    assert AgentDirectory(Settings(caller_token_secret=SECRET)).get("alice") is None  # no demo accounts outside demo
