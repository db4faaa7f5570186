"""The aiohttp clients of LLM-Shield, LLM-CostOps and LLM-Governance (the integration facts).

Each is the core's call logic (policy_core.integrations: guard with timeout
and circuit breaker, caches, camelCase contracts) over one HttpTransport,
so one aiohttp session per client; `close()` ends it.
"""

from __future__ import annotations

from policy_core.integrations import (
    CallGuard,
    CallObserver,
    CostOpsCalls,
    GovernanceCalls,
    ShieldCalls,
)
from policy_core.ports import Clock

from policy_integrations._http import HttpTransport

__all__ = ["BreakerSettings", "CostOpsClient", "GovernanceClient", "ShieldClient"]


class BreakerSettings:
    """The call guard's knobs: per-call timeout, failures that open the breaker, cooldown."""

    def __init__(
        self,
        *,
        timeout: float = 0.2,
        failures: int = 5,
        cooldown: float = 5.0,
        clock: Clock | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self.timeout, self.failures, self.cooldown = timeout, failures, cooldown
        self.clock, self.observer = clock, observer

    def guard(self, integration: str) -> CallGuard:
        return CallGuard(
            integration,
            timeout=self.timeout,
            failures=self.failures,
            cooldown=self.cooldown,
            clock=self.clock,
            observer=self.observer,
        )


class ShieldClient(ShieldCalls):
    """`POST /api/v1/scan`; answers cached `cache_seconds` by hash(text, model)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        breaker: BreakerSettings | None = None,
        cache_seconds: float = 5.0,
    ) -> None:
        breaker = breaker or BreakerSettings()
        self.http = HttpTransport(url, token=token, timeout=breaker.timeout)
        super().__init__(
            self.http,
            breaker.guard("shield"),
            url,
            cache_seconds=cache_seconds,
            clock=breaker.clock,
        )

    async def close(self) -> None:
        await self.http.close()


class CostOpsClient(CostOpsCalls):
    """`POST /api/v1/budget/check` (never cached)."""

    def __init__(
        self, url: str, *, token: str | None = None, breaker: BreakerSettings | None = None
    ) -> None:
        breaker = breaker or BreakerSettings()
        self.http = HttpTransport(url, token=token, timeout=breaker.timeout)
        super().__init__(self.http, breaker.guard("costops"), url)

    async def close(self) -> None:
        await self.http.close()


class GovernanceClient(GovernanceCalls):
    """`GET /api/v1/models/approved`; fresh `ttl` s, served stale up to `stale_seconds`."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        breaker: BreakerSettings | None = None,
        ttl: float = 60.0,
        stale_seconds: float = 3600.0,
    ) -> None:
        breaker = breaker or BreakerSettings()
        self.http = HttpTransport(url, token=token, timeout=breaker.timeout)
        super().__init__(
            self.http,
            breaker.guard("governance"),
            url,
            ttl=ttl,
            stale_seconds=stale_seconds,
            clock=breaker.clock,
        )

    async def close(self) -> None:
        await self.http.close()
