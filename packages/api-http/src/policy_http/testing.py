"""Test support for the HTTP API: the test credentials, token makers and settings.

The services under test come from the composition root
(`policy_cli.testing`, over `bootstrap`), never from here.
"""

from __future__ import annotations

import time
from typing import Any

from policy_core.auth import sign_hs256

from policy_http.settings import HttpSettings

__all__ = [
    "TEST_AUDIENCE",
    "TEST_ISSUER",
    "TEST_SECRET",
    "bearer",
    "make_settings",
    "make_token",
]

TEST_SECRET = "test-secret-for-the-http-api-0123456789"  # noqa: S105 - tests only
TEST_ISSUER = "https://issuer.test"
TEST_AUDIENCE = "llm-policy"


def make_token(
    *,
    roles: list[str] | None = None,
    sub: str = "alice",
    exp_in: float = 300,
    secret: str = TEST_SECRET,
    claims: dict[str, Any] | None = None,
    header: dict[str, Any] | None = None,
) -> str:
    """An HS256 token; `claims` overrides (a None value removes the claim)."""
    now = int(time.time())
    body: dict[str, Any] = {
        "sub": sub,
        "roles": roles if roles is not None else ["admin"],
        "iat": now,
        "exp": int(now + exp_in),
        "iss": TEST_ISSUER,
        "aud": TEST_AUDIENCE,
    }
    body.update(claims or {})
    body = {k: v for k, v in body.items() if v is not None}
    return sign_hs256(secret, body, header or {"alg": "HS256"})


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}


def make_settings(**overrides: Any) -> HttpSettings:
    """Settings for tests (credentials are the services' authenticator's, not settings)."""
    base: dict[str, Any] = {
        "gc_freeze": False,  # tests build many apps in one process
    }
    base.update(overrides)
    return HttpSettings(**base)
