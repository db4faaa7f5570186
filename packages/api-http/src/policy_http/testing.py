"""Test support for the HTTP API: in-memory services and token makers.

Used by this package's tests and the cross-package ones (language cases,
schemathesis, benchmarks). Imports only the core and joserfc.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.jwk import OctKey
from policy_core.memory import (
    MemoryApiKeyStore,
    MemoryDecisionCache,
    MemoryDecisionLog,
    MemoryPolicyStore,
    MemoryRateLimiter,
    MemoryUsageStore,
    RateStrategy,
    SystemClock,
)
from policy_core.ports import RateLimiter
from policy_core.ratelimits import parse_rate_limits
from policy_core.services import (
    ApiKeyService,
    DecisionHistoryService,
    EngineHolder,
    EvaluationService,
    PolicyService,
    UsageService,
)

from policy_http.settings import HttpSettings

__all__ = [
    "TEST_AUDIENCE",
    "TEST_ISSUER",
    "TEST_SECRET",
    "MemoryServices",
    "bearer",
    "make_settings",
    "make_token",
    "memory_services",
    "open_memory_services",
]

TEST_SECRET = "test-secret-for-the-http-api-0123456789"  # noqa: S105 - tests only
TEST_ISSUER = "https://issuer.test"
TEST_AUDIENCE = "llm-policy"


@dataclass
class MemoryServices:
    """The services over memory adapters, shaped like the composition root's."""

    policies: PolicyService
    evaluation: EvaluationService
    usage: UsageService | None
    api_keys: ApiKeyService | None
    decisions: DecisionHistoryService | None
    holder: EngineHolder
    log: MemoryDecisionLog | None = None  # the adapter behind `decisions`, for tests to inspect
    rate_limiter: RateLimiter | None = None
    checks: dict[str, Callable[[], Awaitable[bool]]] = field(default_factory=dict)

    async def ready(self) -> bool:
        """Loaded, and every check answers True."""
        return self.holder.loaded and all([await check() for check in self.checks.values()])


async def memory_services(
    *,
    default_decision: str = "allow",
    cache: bool = True,
    max_records: int | None = None,
    rate_limits: str | None = None,
    rate_limit_strategy: RateStrategy = "fixed-window",
) -> MemoryServices:
    """Started services over fresh memory adapters.

    `rate_limits` is the `LLM_POLICY_RATE_LIMITS` spec (None: the defaults, "": none).
    """
    clock = SystemClock()
    limits = parse_rate_limits(rate_limits)
    holder = EngineHolder()
    store = MemoryPolicyStore(clock)
    log = MemoryDecisionLog(max_records=max_records)
    policies = PolicyService(
        reader=store,
        writer=store,
        holder=holder,
        default_decision="deny" if default_decision == "deny" else "allow",
    )
    await policies.start()
    usage = MemoryUsageStore(clock)
    evaluation = EvaluationService(
        holder,
        cache=MemoryDecisionCache(clock) if cache else None,
        usage=usage,
        log=log,
        clock=clock,
    )
    return MemoryServices(
        policies=policies,
        evaluation=evaluation,
        usage=UsageService(usage),
        api_keys=ApiKeyService(MemoryApiKeyStore(), clock),
        decisions=DecisionHistoryService(log, log, clock),
        holder=holder,
        log=log,
        rate_limiter=MemoryRateLimiter(limits, strategy=rate_limit_strategy, clock=clock)
        if limits
        else None,
    )


@asynccontextmanager
async def open_memory_services(**options: Any) -> AsyncIterator[MemoryServices]:
    """`memory_services` as a context manager (the factory form `create_app` accepts)."""
    svc = await memory_services(**options)
    try:
        yield svc
    finally:
        await svc.policies.close()


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
    return jwt.encode(header or {"alg": "HS256"}, body, OctKey.import_key(secret))


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}


def make_settings(**overrides: Any) -> HttpSettings:
    """Settings with the test secret, issuer and audience."""
    base: dict[str, Any] = {
        "gc_freeze": False,  # tests build many apps in one process
        "jwt_secret": TEST_SECRET,
        "jwt_issuer": TEST_ISSUER,
        "jwt_audience": TEST_AUDIENCE,
    }
    base.update(overrides)
    return HttpSettings(**base)
