"""Caller tokens (JWTs signed by the integrator's backend) and agent credentials/sessions."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from .config import Settings
from .errors import GatewayError, Unauthorized
from .models import CallerIdentity

MAX_TOKEN_BYTES = 8 * 1024
_STANDARD_CLAIMS = {"sub", "name", "email", "phone_number", "phone", "iss", "aud", "exp", "iat", "nbf", "jti"}


class TokenError(Unauthorized):
    code = "invalid_token"


class ExpiredToken(TokenError):
    code = "token_expired"


class ConfigError(GatewayError):
    code = "config_error"


class CallerTokenVerifier:
    """Verifies caller JWTs: HS256 with a shared secret, or RS256/ES256 with a public key.

    `exp` and `aud` are required; `iss` is checked when configured. Identity fields come only from here.
    """

    def __init__(self, settings: Settings) -> None:
        public_key = settings.caller_public_key()
        secret = settings.caller_token_secret.get_secret_value() if settings.caller_token_secret else None
        if public_key is None and secret is None:
            raise ConfigError("set CALLIN_CALLER_TOKEN_SECRET (HS256) or CALLIN_CALLER_TOKEN_PUBLIC_KEY (RS256/ES256)")
        self._keys: list[tuple[Any, list[str]]] = []
        if public_key is not None:
            self._keys.append((public_key, ["RS256", "ES256"]))
        if secret is not None:
            if len(secret) < 16:
                raise ConfigError("the caller token secret must be at least 16 characters")
            self._keys.append((secret, ["HS256"]))
        self._audience = settings.caller_token_audience
        self._issuer = settings.caller_token_issuer
        self._leeway = settings.caller_token_leeway_s
        self._max_ttl = settings.caller_token_max_ttl_s

    def verify(self, token: str) -> CallerIdentity:
        if not isinstance(token, str) or not token:
            raise TokenError("a caller token is required")
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenError(f"token longer than {MAX_TOKEN_BYTES} bytes")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError(f"malformed token: {exc}") from None
        alg = header.get("alg")
        for key, algorithms in self._keys:
            if alg in algorithms:
                return self._decode(token, key, algorithms)
        raise TokenError(f"token algorithm {alg!r} is not accepted by this gateway")

    def _decode(self, token: str, key: Any, algorithms: list[str]) -> CallerIdentity:
        options: dict[str, Any] = {"require": ["exp", "sub", "aud"]}
        kwargs: dict[str, Any] = {"audience": self._audience, "leeway": self._leeway}
        if self._issuer:
            options["require"].append("iss")
            kwargs["issuer"] = self._issuer
        try:
            claims = jwt.decode(token, key, algorithms=algorithms, options=options, **kwargs)
        except jwt.ExpiredSignatureError:
            raise ExpiredToken("the caller token has expired") from None
        except jwt.InvalidAudienceError:
            raise TokenError(f"the token's audience is not {self._audience!r}") from None
        except jwt.InvalidIssuerError:
            raise TokenError("the token's issuer is not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"the token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"the token is not valid: {exc}") from None
        exp = int(claims["exp"])
        if exp - time.time() > self._max_ttl + self._leeway:
            raise TokenError(f"token lifetime exceeds {self._max_ttl} s")
        extra = {
            k: v
            for k, v in claims.items()
            if k not in _STANDARD_CLAIMS and isinstance(v, (str, int, float, bool)) and not isinstance(v, bytes)
        }
        try:
            return CallerIdentity(
                subject=str(claims["sub"]),
                name=claims.get("name"),
                email=claims.get("email"),
                phone=claims.get("phone_number") or claims.get("phone"),
                issuer=claims.get("iss"),
                claims=extra,
                expires_at=exp,
            )
        except ValueError as exc:
            raise TokenError(f"token claims are invalid: {exc}") from None


def mint_caller_token(
    secret: str,
    *,
    sub: str,
    name: str | None = None,
    audience: str = "callin",
    ttl_s: int = 3600,
    issuer: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Sign an HS256 caller token, as an integrator's backend would (used by `callin token` and the demo)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "aud": audience, "iat": now, "exp": now + ttl_s}
    if name:
        claims["name"] = name
    if issuer:
        claims["iss"] = issuer
    claims.update(extra or {})
    return jwt.encode(claims, secret, algorithm="HS256")


@dataclass(frozen=True, slots=True)
class AgentAccount:
    username: str
    display_name: str
    role: str = "agent"
    skills: tuple[str, ...] = ()
    capacity: int = 1


class AgentDirectory:
    """Agent accounts in memory (the configured demo accounts), for tests and tools. The server keeps accounts in
    the database: gateway.store.accounts.AccountStore."""

    def __init__(self, settings: Settings) -> None:
        self._accounts: dict[str, tuple[AgentAccount, str]] = {}
        if settings.demo:
            for demo in settings.demo_agents:
                self._accounts[demo.username] = (
                    AgentAccount(username=demo.username, display_name=demo.display_name, role=demo.role,
                                 skills=tuple(demo.skills), capacity=demo.capacity),
                    demo.password,
                )

    def check_password(self, username: str, password: str) -> AgentAccount:
        entry = self._accounts.get(username)
        # Compare even when the user is unknown, so timing does not tell which usernames exist.
        expected = entry[1] if entry else secrets.token_hex(16)
        if not hmac.compare_digest(expected.encode(), password.encode()) or entry is None:
            raise Unauthorized("wrong username or password", code="bad_credentials")
        return entry[0]

    def get(self, username: str) -> AgentAccount | None:
        entry = self._accounts.get(username)
        return entry[0] if entry else None


class AgentSessions:
    """Short signed agent session tokens (HS256 with a per-deployment secret)."""

    AUDIENCE = "callin-agent"

    def __init__(self, settings: Settings, directory: AgentDirectory | None = None) -> None:
        secret = settings.agent_secret.get_secret_value() if settings.agent_secret else secrets.token_urlsafe(32)
        self._secret = secret
        self._ttl = settings.agent_session_ttl_s
        self._directory = directory

    def issue(self, account: AgentAccount) -> str:
        now = int(time.time())
        return jwt.encode(
            {"sub": account.username, "aud": self.AUDIENCE, "iat": now, "exp": now + self._ttl},
            self._secret,
            algorithm="HS256",
        )

    def verify(self, token: str) -> AgentAccount:
        """Check the token and look the account up in the in-memory directory given to the constructor."""
        if self._directory is None:
            raise ConfigError("no directory: use subject() and look the account up in the account store")
        account = self._directory.get(self.subject(token))
        if account is None:
            raise TokenError("the agent account no longer exists")
        return account

    def subject(self, token: str) -> str:
        """The username a valid, unexpired agent session token (or session cookie) was issued to."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_BYTES:
            raise TokenError("an agent session token is required")
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], audience=self.AUDIENCE)
        except jwt.ExpiredSignatureError:
            raise ExpiredToken("the agent session has expired; sign in again") from None
        except jwt.PyJWTError:
            raise TokenError("the agent session token is not valid") from None
        return str(claims.get("sub"))
