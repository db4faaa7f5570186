"""Who is calling: bearer JWTs and API keys, verified once for every API.

`CredentialAuthenticator` implements the `Authenticator` port
(policy_core.ports); the HTTP and gRPC APIs receive it from the composition
root and keep only their transport part. This is the one module of the
project that imports joserfc (an import-linter contract keeps it so).
Verifying a token is pure computation over keys the composition root loads
and passes in: nothing here reads a file.

The rules, the same for both APIs (docs/http-api.md, docs/grpc.md):

- The algorithm is pinned by the key, never chosen by the token: HS256 only
  with the shared secret, RS256 only with an RSA key and ES256 only with an EC
  P-256 key of the JWKS. The header's `alg` (and `kid`) only pick among the
  keys configured for that algorithm, so `alg: none` and HS256 signed with an
  RSA public key find no key.
- `exp`, `sub` and `roles` are required (`roles`: a list of role names, which
  may be empty); `nbf` and `iat` are checked when present; `iss` and `aud`
  when configured. Clock skew: `leeway` seconds, clamped to 0..30.
- Roles grant permissions through policy_core.access; an unknown role grants
  nothing.
- A verified token is remembered until it expires; a verified API key for
  `cache_seconds` (a key revoked through this instance is forgotten at once).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import ECKey, Key, KeySet, OctKey, RSAKey

from policy_core.access import ALL_PERMISSIONS, permissions_for
from policy_core.errors import AuthError
from policy_core.ports import Principal
from policy_core.services import ApiKeyService

__all__ = [
    "MAX_LEEWAY_SECONDS",
    "ApiKeyVerifier",
    "CredentialAuthenticator",
    "SigningKey",
    "TokenVerifier",
    "jwks_keys",
    "mint_token",
    "sign_hs256",
]

#: The most clock skew accepted on `exp`, `nbf` and `iat`, whatever is configured.
MAX_LEEWAY_SECONDS = 30

_MAX_TOKEN_CHARS = 8192
_MAX_KEY_CHARS = 256
_REMEMBERED = 4096
_ANONYMOUS = Principal(
    id="anonymous", roles=("admin",), permissions=ALL_PERMISSIONS, kind="anonymous"
)


class SigningKey(msgspec.Struct, frozen=True):
    """A public key of the JWKS and the one algorithm it verifies."""

    alg: str
    kid: str | None
    key: Key


def _pinned_alg(key: Key) -> str | None:
    if isinstance(key, RSAKey) and key.alg in (None, "RS256"):
        return "RS256"
    if isinstance(key, ECKey) and key.curve_name == "P-256" and key.alg in (None, "ES256"):
        return "ES256"
    return None


def jwks_keys(document: object, *, source: str = "the JWKS") -> tuple[SigningKey, ...]:
    """The RS256/ES256 public keys of a parsed JWKS document.

    ValueError (naming `source`, e.g. the file) when the document is not a key
    set, holds no key, or holds anything but RSA and EC P-256 signing keys.
    """
    try:
        keyset = KeySet.import_key_set(document)  # type: ignore[arg-type]
    except (ValueError, TypeError, KeyError, AttributeError, JoseError) as exc:
        raise ValueError(f"{source} is not a usable JWKS: {exc}") from exc
    keys: list[SigningKey] = []
    for key in keyset.keys:
        alg = _pinned_alg(key)
        if alg is None or key.get("use") == "enc" or key.is_private:
            raise ValueError(
                f"{source}: key {key.kid!r} is not an RS256/ES256 public signing key; "
                "only RSA and EC P-256 public keys are accepted"
            )
        keys.append(SigningKey(alg, key.kid, key))
    if not keys:
        raise ValueError(f"{source} holds no key")
    return tuple(keys)


def _header(token: str) -> dict[str, Any]:
    if len(token) > _MAX_TOKEN_CHARS or token.count(".") != 2:
        raise AuthError("the bearer token is not a signed JWT")
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise AuthError("the bearer token is not a signed JWT") from exc
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        raise AuthError("the bearer token is not a signed JWT")
    return header


def _describe(exc: JoseError) -> str:
    # joserfc's descriptions name the claim, never its value: safe to return.
    if isinstance(exc, ExpiredTokenError):
        return "the token has expired"
    if isinstance(exc, MissingClaimError | InvalidClaimError):
        return f"the token is not acceptable: {exc.description}"
    if isinstance(exc, BadSignatureError):
        return "the token signature is invalid"
    return "the token is invalid"


class TokenVerifier:
    """Verifies bearer JWTs (see the module docstring for the rules)."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        keys: Iterable[SigningKey] = (),
        issuer: str | None = None,
        audience: str | None = None,
        leeway: int = MAX_LEEWAY_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = OctKey.import_key(secret) if secret else None
        self._keys = tuple(keys)
        self._clock = clock
        self.leeway = max(0, min(int(leeway), MAX_LEEWAY_SECONDS))
        claims: dict[str, Any] = {
            "exp": {"essential": True},
            "sub": {"essential": True},
            "roles": {"essential": True, "allow_blank": True},
        }
        if issuer:
            claims["iss"] = {"essential": True, "value": issuer}
        if audience:
            claims["aud"] = {"essential": True, "value": audience}
        self._registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self._clock()), leeway=self.leeway, **claims
        )
        self._verified: dict[str, tuple[Principal, float]] = {}

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (no key: every token is refused)."""
        return self._secret is not None or bool(self._keys)

    def verify(self, token: str) -> Principal:
        """The principal named by a valid token; AuthError otherwise."""
        known = self._verified.get(token)
        if known is not None:
            if known[1] + self.leeway > self._clock():
                return known[0]
            del self._verified[token]
            raise AuthError("the token has expired")
        principal, expires = self._check(token)
        if len(self._verified) >= _REMEMBERED:
            self._verified.clear()
        self._verified[token] = (principal, expires)
        return principal

    def _check(self, token: str) -> tuple[Principal, float]:
        header = _header(token)
        key, alg = self._key(header["alg"], header.get("kid"))
        try:
            claims = jwt.decode(token, key, algorithms=[alg]).claims
            self._registry.validate(claims)
        except JoseError as exc:
            raise AuthError(_describe(exc)) from exc
        except (ValueError, TypeError) as exc:  # malformed segments inside joserfc
            raise AuthError("the bearer token is malformed") from exc
        roles = claims["roles"]
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise AuthError("the `roles` claim must be a list of role names")
        principal = Principal(
            id=claims["sub"], roles=tuple(roles), permissions=permissions_for(roles), kind="jwt"
        )
        return principal, float(claims["exp"])

    def _key(self, alg: str, kid: object) -> tuple[Key, str]:
        if alg == "HS256" and self._secret is not None:
            return self._secret, alg
        candidates = [k for k in self._keys if k.alg == alg]
        if not candidates:
            raise AuthError(f"no configured key verifies {alg[:16]!r} tokens")
        if kid is not None:
            candidates = [k for k in candidates if k.kid == kid]
            if not candidates:
                raise AuthError("no configured key has the `kid` of the token")
        elif len(candidates) > 1:
            raise AuthError("several keys could verify the token: set `kid` in its header")
        return candidates[0].key, alg


class ApiKeyVerifier:
    """Checks API keys with the ApiKeyService (hashed keys in the store), with a short memory.

    A verified key is remembered `cache_seconds`, so a busy client costs one
    store read per period rather than one per call. A key revoked through
    this instance is forgotten at once (`forget`); through another one, within
    `cache_seconds`.
    """

    def __init__(
        self,
        service: ApiKeyService,
        *,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._service = service
        self._ttl = cache_seconds
        self._clock = clock
        self._verified: dict[str, tuple[Principal, float]] = {}

    async def verify(self, key: str) -> Principal:
        """The principal of a live key; AuthError otherwise (never naming the key)."""
        now = self._clock()
        known = self._verified.get(key)
        if known is not None and known[1] > now:
            return known[0]
        if len(key) > _MAX_KEY_CHARS:
            raise AuthError("the API key is not valid")
        record = await self._service.verify(key)
        if record is None:
            raise AuthError("the API key is not valid or has been revoked")
        principal = Principal(
            id=f"apikey:{record.id}",
            roles=record.roles,
            permissions=permissions_for(record.roles),
            kind="api_key",
        )
        if self._ttl > 0:
            if len(self._verified) >= _REMEMBERED:
                self._verified.clear()
            self._verified[key] = (principal, now + self._ttl)
        return principal

    def forget(self, key_id: str) -> None:
        """Drop the remembered verifications of a key (it was revoked here)."""
        target = f"apikey:{key_id}"
        for key, (principal, _) in list(self._verified.items()):
            if principal.id == target:
                del self._verified[key]


class CredentialAuthenticator:
    """The `Authenticator` port: a bearer token or an API key to a Principal.

    `tokens` None (or without keys) refuses bearer tokens, `api_keys` None
    refuses API keys. `anonymous=True` is for local development and tests
    only: a call without any credential acts as an anonymous admin
    (credentials that are present are still verified).
    """

    def __init__(
        self,
        *,
        tokens: TokenVerifier | None = None,
        api_keys: ApiKeyVerifier | None = None,
        anonymous: bool = False,
    ) -> None:
        self._tokens = tokens if tokens is not None and tokens.enabled else None
        self._api_keys = api_keys
        self._anonymous = anonymous

    async def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        """The caller; AuthError when the credentials are missing or refused."""
        if authorization:
            scheme, _, token = authorization.partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise AuthError("`Authorization` must read `Bearer <JWT>`")
            if self._tokens is None:
                raise AuthError("bearer tokens are not enabled on this server")
            return self._tokens.verify(token)
        if api_key:
            if self._api_keys is None:
                raise AuthError("API keys are not enabled on this server")
            return await self._api_keys.verify(api_key.strip())
        if self._anonymous:
            return _ANONYMOUS
        raise AuthError(
            "authentication required: send `Authorization: Bearer <JWT>` or an `X-API-Key`"
        )

    def forget_api_key(self, key_id: str) -> None:
        if self._api_keys is not None:
            self._api_keys.forget(key_id)


def sign_hs256(
    secret: str, claims: Mapping[str, Any], header: Mapping[str, Any] | None = None
) -> str:
    """A JWT of exactly these claims, signed HS256 with `secret` (tests, the CLI)."""
    return jwt.encode(
        dict(header or {"alg": "HS256", "typ": "JWT"}), dict(claims), OctKey.import_key(secret)
    )


def mint_token(
    secret: str,
    *,
    subject: str,
    roles: Sequence[str],
    ttl_seconds: int,
    issuer: str | None = None,
    audience: str | None = None,
    now: float | None = None,
) -> str:
    """An HS256 token this module accepts: `sub`, `roles`, `iat`, `exp`, and `iss`/`aud` when given."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": subject,
        "roles": list(roles),
        "iat": issued,
        "exp": issued + ttl_seconds,
    }
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return sign_hs256(secret, claims)
