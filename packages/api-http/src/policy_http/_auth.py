"""Who is calling, and what may they do: JWT verification, roles and permissions.

JWTs are verified with joserfc. The algorithm is pinned by the key that
verifies it (HS256 for the shared secret; RS256/ES256 for the JWKS keys,
from the key's `alg` or its type), so `alg: none` and HS/RS confusion (an RSA
public key used as an HMAC secret) cannot pass: the header's `alg` only picks
among keys already configured for that algorithm. joserfc's `decode` checks
the signature only; the claims (`exp` required, `iss`/`aud` when configured,
`nbf`/`iat`) are checked by a `JWTClaimsRegistry` on every token.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

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
from policy_core.access import ALL_PERMISSIONS, ROLE_PERMISSIONS, permissions_for

__all__ = [
    "ALL_PERMISSIONS",
    "ROLE_PERMISSIONS",
    "AuthError",
    "JwtVerifier",
    "Principal",
    "permissions_for",
]

_MAX_TOKEN_CHARS = 8192
_CACHE_SIZE = 4096


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated caller: `id` is the JWT `sub` or the API key's id."""

    id: str
    roles: tuple[str, ...]
    permissions: frozenset[str]
    kind: Literal["jwt", "api_key"]

    def can(self, permission: str) -> bool:
        return permission in self.permissions


class AuthError(Exception):
    """Authentication failed; the message is safe to show (it never echoes the credential)."""


class _Pinned(msgspec.Struct, frozen=True):
    alg: str
    kid: str | None
    key: Key


def _pinned_alg(key: Key) -> str | None:
    declared = key.alg
    if isinstance(key, RSAKey):
        return "RS256" if declared in (None, "RS256") else None
    if isinstance(key, ECKey) and key.curve_name == "P-256":
        return "ES256" if declared in (None, "ES256") else None
    return None


def load_jwks(path: str) -> list[_Pinned]:
    """Read a JWKS file; every key must be an RSA (RS256) or EC P-256 (ES256) public key."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        keyset = KeySet.import_key_set(data)
    except (OSError, ValueError, TypeError, KeyError, JoseError) as exc:
        raise ValueError(f"JWKS file {path!r} cannot be read: {exc}") from exc
    pinned: list[_Pinned] = []
    for key in keyset.keys:
        alg = _pinned_alg(key)
        if alg is None or key.get("use") == "enc":
            raise ValueError(
                f"JWKS file {path!r}: key {key.kid!r} is not an RS256/ES256 signing key; "
                "only RSA and EC P-256 public keys are accepted"
            )
        pinned.append(_Pinned(alg, key.kid, key))
    if not pinned:
        raise ValueError(f"JWKS file {path!r} holds no key")
    return pinned


def _b64_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


class JwtVerifier:
    """Verifies bearer tokens; remembers verified tokens until they expire."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        jwks: list[_Pinned] | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._hmac = OctKey.import_key(secret) if secret else None
        self._jwks = jwks or []
        self._clock = clock
        self._leeway = min(leeway, 30)
        options: dict[str, Any] = {"exp": {"essential": True}, "sub": {"essential": True}}
        if issuer:
            options["iss"] = {"essential": True, "value": issuer}
        if audience:
            options["aud"] = {"essential": True, "value": audience}
        self._claims = jwt.JWTClaimsRegistry(
            now=lambda: int(self._clock()), leeway=self._leeway, **options
        )
        self._cache: dict[str, tuple[Principal, float]] = {}

    @property
    def enabled(self) -> bool:
        return self._hmac is not None or bool(self._jwks)

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; AuthError otherwise."""
        hit = self._cache.get(token)
        if hit is not None:
            if hit[1] > self._clock() - self._leeway:
                return hit[0]
            del self._cache[token]
            raise AuthError("the token has expired")
        principal, exp = self._verify(token)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[token] = (principal, exp)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        if len(token) > _MAX_TOKEN_CHARS or token.count(".") != 2:
            raise AuthError("the bearer token is not a signed JWT")
        try:
            header = _b64_json(token.split(".", 1)[0])
        except (ValueError, binascii.Error, UnicodeError) as exc:
            raise AuthError("the bearer token is not a signed JWT") from exc
        if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
            raise AuthError("the bearer token is not a signed JWT")
        key, alg = self._key_for(header["alg"], header.get("kid"))
        try:
            decoded = jwt.decode(token, key, algorithms=[alg])
            self._claims.validate(decoded.claims)
        except JoseError as exc:
            raise AuthError(_describe(exc)) from exc
        except (ValueError, TypeError) as exc:  # malformed segments inside joserfc
            raise AuthError("the bearer token is malformed") from exc
        claims = decoded.claims
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise AuthError("the `roles` claim must be a list of role names")
        principal = Principal(
            id=claims["sub"],
            roles=tuple(roles),
            permissions=permissions_for(roles),
            kind="jwt",
        )
        return principal, float(claims["exp"])

    def _key_for(self, alg: str, kid: object) -> tuple[Key, str]:
        if alg == "HS256" and self._hmac is not None:
            return self._hmac, alg
        candidates = [p for p in self._jwks if p.alg == alg]
        if kid is not None:
            candidates = [p for p in candidates if p.kid == kid]
        if len(candidates) == 1 or (candidates and kid is not None):
            return candidates[0].key, alg
        if not candidates:
            raise AuthError(f"no key accepts tokens signed with {alg[:16]!r}")
        raise AuthError("several keys could verify the token; set `kid` in its header")


def _describe(exc: JoseError) -> str:
    # joserfc's descriptions name the claim, never its value: safe to return.
    if isinstance(exc, ExpiredTokenError):
        return "the token has expired"
    if isinstance(exc, MissingClaimError | InvalidClaimError):
        return f"the token is not acceptable: {exc.description}"
    if isinstance(exc, BadSignatureError):
        return "the token signature is invalid"
    return "the token is invalid"
