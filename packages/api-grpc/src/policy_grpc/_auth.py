"""Who calls, and what they may do: JWT bearer tokens and API keys in gRPC metadata.

The same credentials and roles as the HTTP API (interfaces.md):
`authorization: Bearer <JWT>` or `x-api-key: lpk_<prefix>_<secret>`.

JWTs: the accepted algorithm is decided by the configured keys, never by the
token (HS256 only with a shared secret, RS256/ES256 only with a JWKS key of
that type), so `alg: none` and HMAC-with-a-public-key confusion fail.
`joserfc.jwt.decode` checks the signature only: every token then goes
through a `JWTClaimsRegistry` (`exp` and `sub` required, `iss`/`aud` when
configured, leeway at most 30 s).

The HTTP API has an equivalent module; both should move to one shared place.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import ECKey, Key, KeySet, OctKey, RSAKey
from policy_core.access import (
    ALL_PERMISSIONS as PERMISSIONS,
    ROLE_PERMISSIONS,
    permissions_for as permissions_of,
)
from policy_core.services import ApiKeyService

__all__ = [
    "ROLE_PERMISSIONS",
    "ApiKeyVerifier",
    "AuthError",
    "Authenticator",
    "JwtVerifier",
    "Principal",
    "load_jwks",
    "permissions_of",
]

_MAX_CREDENTIAL = 8192
_REMEMBERED = 4096


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated caller (`id`: the JWT `sub` or the API key's id)."""

    id: str
    roles: tuple[str, ...]
    permissions: frozenset[str]
    kind: Literal["jwt", "api_key", "anonymous"]


class AuthError(Exception):
    """Credentials missing or refused; the message never echoes the credential."""


class _SigningKey(msgspec.Struct, frozen=True):
    alg: str
    kid: str | None
    key: Key


def _alg_of(key: Key) -> str | None:
    if isinstance(key, RSAKey) and key.alg in (None, "RS256"):
        return "RS256"
    if isinstance(key, ECKey) and key.curve_name == "P-256" and key.alg in (None, "ES256"):
        return "ES256"
    return None


def load_jwks(path: str) -> tuple[_SigningKey, ...]:
    """The RS256/ES256 public keys of a JWKS file (ValueError on anything else)."""
    try:
        keyset = KeySet.import_key_set(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError, JoseError) as exc:
        raise ValueError(f"cannot read the JWKS file {path!r}: {exc}") from exc
    keys = []
    for key in keyset.keys:
        alg = _alg_of(key)
        if alg is None or key.get("use") == "enc":
            raise ValueError(
                f"JWKS file {path!r}: key {key.kid!r} is neither an RS256 nor an ES256 signing key"
            )
        keys.append(_SigningKey(alg, key.kid, key))
    if not keys:
        raise ValueError(f"the JWKS file {path!r} holds no key")
    return tuple(keys)


def _header(token: str) -> dict[str, Any]:
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise AuthError("the bearer token is not a signed JWT") from exc
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        raise AuthError("the bearer token is not a signed JWT")
    return header


class JwtVerifier:
    """Verifies bearer JWTs; a verified token is remembered until it expires."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        jwks: Iterable[_SigningKey] = (),
        issuer: str | None = None,
        audience: str | None = None,
        leeway: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = OctKey.import_key(secret) if secret else None
        self._jwks = tuple(jwks)
        self._clock = clock
        self._leeway = max(0, min(leeway, 30))
        claims: dict[str, Any] = {"exp": {"essential": True}, "sub": {"essential": True}}
        if issuer:
            claims["iss"] = {"essential": True, "value": issuer}
        if audience:
            claims["aud"] = {"essential": True, "value": audience}
        self._registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self._clock()), leeway=self._leeway, **claims
        )
        self._verified: dict[str, tuple[Principal, float]] = {}

    @property
    def enabled(self) -> bool:
        return self._secret is not None or bool(self._jwks)

    def verify(self, token: str) -> Principal:
        """The principal named by a valid token; AuthError otherwise."""
        known = self._verified.get(token)
        if known is not None:
            if known[1] + self._leeway > self._clock():
                return known[0]
            del self._verified[token]
            raise AuthError("the token has expired")
        principal, expires = self._check(token)
        if len(self._verified) >= _REMEMBERED:
            self._verified.clear()
        self._verified[token] = (principal, expires)
        return principal

    def _check(self, token: str) -> tuple[Principal, float]:
        if len(token) > _MAX_CREDENTIAL or token.count(".") != 2:
            raise AuthError("the bearer token is not a signed JWT")
        header = _header(token)
        key, alg = self._key(header["alg"], header.get("kid"))
        try:
            claims = jwt.decode(token, key, algorithms=[alg]).claims
            self._registry.validate(claims)
        except ExpiredTokenError as exc:
            raise AuthError("the token has expired") from exc
        except JoseError as exc:
            raise AuthError(f"the token is not acceptable: {exc.error}") from exc
        except (ValueError, TypeError) as exc:
            raise AuthError("the bearer token is malformed") from exc
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise AuthError("the `roles` claim must be a list of role names")
        principal = Principal(
            id=claims["sub"], roles=tuple(roles), permissions=permissions_of(roles), kind="jwt"
        )
        return principal, float(claims["exp"])

    def _key(self, alg: str, kid: object) -> tuple[Key, str]:
        if alg == "HS256" and self._secret is not None:
            return self._secret, alg
        keys = [k for k in self._jwks if k.alg == alg and (kid is None or k.kid == kid)]
        if not keys:
            raise AuthError(f"no configured key accepts {alg[:16]!r} tokens")
        if len(keys) > 1 and kid is None:
            raise AuthError("several keys could verify the token: set `kid` in its header")
        return keys[0].key, alg


class ApiKeyVerifier:
    """Checks `x-api-key` values with the ApiKeyService (hashed keys in the store).

    A verified key is remembered `cache_seconds`, so a busy client costs one
    store read per period rather than one per call.
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
        """The principal of a live key; AuthError otherwise."""
        known = self._verified.get(key)
        if known is not None and known[1] > self._clock():
            return known[0]
        if len(key) > 256:
            raise AuthError("the API key is malformed")
        record = await self._service.verify(key)
        if record is None:
            raise AuthError("the API key is not valid (unknown, malformed or revoked)")
        principal = Principal(
            id=record.id,
            roles=record.roles,
            permissions=permissions_of(record.roles),
            kind="api_key",
        )
        if len(self._verified) >= _REMEMBERED:
            self._verified.clear()
        self._verified[key] = (principal, self._clock() + self._ttl)
        return principal


_ANONYMOUS = Principal(id="anonymous", roles=("admin",), permissions=PERMISSIONS, kind="anonymous")


class Authenticator:
    """Finds the principal of a call from its metadata.

    With `required=False` (local development only) a call without
    credentials acts as an anonymous admin; credentials that are present are
    still verified.
    """

    def __init__(
        self,
        *,
        jwt_verifier: JwtVerifier | None = None,
        api_keys: ApiKeyVerifier | None = None,
        required: bool = True,
    ) -> None:
        self._jwt = jwt_verifier if jwt_verifier is not None and jwt_verifier.enabled else None
        self._api_keys = api_keys
        self._required = required

    async def authenticate(self, metadata: Mapping[str, Any]) -> Principal:
        """The caller's principal; AuthError when missing or invalid."""
        authorization = metadata.get("authorization")
        api_key = metadata.get("x-api-key")
        if isinstance(authorization, str) and authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("`authorization` must read `Bearer <JWT>`")
            if self._jwt is None:
                raise AuthError("bearer tokens are not enabled on this server")
            return self._jwt.verify(token.strip())
        if isinstance(api_key, str) and api_key:
            if self._api_keys is None:
                raise AuthError("API keys are not enabled on this server")
            return await self._api_keys.verify(api_key.strip())
        if not self._required:
            return _ANONYMOUS
        raise AuthError("credentials are required: `authorization: Bearer <JWT>` or `x-api-key`")
