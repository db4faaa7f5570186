"""Shared fixtures: in-memory services, token makers, a test client per app."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey
from litestar import Litestar
from litestar.testing import TestClient
from policy_core.memory import (
    MemoryApiKeyStore,
    MemoryDecisionCache,
    MemoryDecisionLog,
    MemoryPolicyStore,
    MemoryUsageStore,
    SystemClock,
)
from policy_core.ports import DecisionLog
from policy_core.services import (
    ApiKeyService,
    EngineHolder,
    EvaluationService,
    PolicyService,
    UsageService,
)
from policy_http import HttpSettings, create_app

SECRET = "test-secret-for-the-http-api-0123456789"
ISSUER = "https://issuer.test"
AUDIENCE = "llm-policy"


@dataclass
class MemoryServices:
    """The services over memory adapters, shaped like the CLI's `Services`."""

    policies: PolicyService
    evaluation: EvaluationService
    usage: UsageService | None
    api_keys: ApiKeyService | None
    decisions: DecisionLog | None
    holder: EngineHolder
    checks: dict[str, Callable[[], Awaitable[bool]]] = field(default_factory=dict)

    async def ready(self) -> bool:
        return self.holder.loaded and all([await c() for c in self.checks.values()])


async def memory_services() -> MemoryServices:
    clock = SystemClock()
    holder = EngineHolder()
    store = MemoryPolicyStore(clock)
    log = MemoryDecisionLog()
    policies = PolicyService(reader=store, writer=store, holder=holder)
    await policies.start()
    usage = MemoryUsageStore(clock)
    evaluation = EvaluationService(
        holder, cache=MemoryDecisionCache(clock), usage=usage, log=log, clock=clock
    )
    return MemoryServices(
        policies=policies,
        evaluation=evaluation,
        usage=UsageService(usage),
        api_keys=ApiKeyService(MemoryApiKeyStore(), clock),
        decisions=log,
        holder=holder,
    )


def make_token(
    *,
    roles: list[str] | None = None,
    sub: str = "alice",
    exp_in: float = 300,
    secret: str = SECRET,
    extra: dict[str, Any] | None = None,
    header: dict[str, Any] | None = None,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "roles": roles if roles is not None else ["admin"],
        "iat": now,
        "exp": now + exp_in,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    claims.update(extra or {})
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(header or {"alg": "HS256"}, claims, OctKey.import_key(secret))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def settings(**overrides: Any) -> HttpSettings:
    base: dict[str, Any] = {
        "jwt_secret": SECRET,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
    }
    base.update(overrides)
    return HttpSettings(**base)


@pytest.fixture
async def services() -> AsyncIterator[MemoryServices]:
    svc = await memory_services()
    yield svc
    await svc.policies.close()


@pytest.fixture
def app(services: MemoryServices) -> Litestar:
    return create_app(services, settings())


@pytest.fixture
def client(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def admin() -> dict[str, str]:
    return bearer(make_token(roles=["admin"]))
