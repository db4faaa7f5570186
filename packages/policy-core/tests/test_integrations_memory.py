"""The memory integration clients pass the integrations contract suite (policy_core.testing)."""

from __future__ import annotations

from typing import Any

import pytest
from policy_core.clock import ManualClock
from policy_core.memory import FakeService
from policy_core.testing import IntegrationsContract
from policy_core.testing.integrations_contract import TIMEOUT, make_client


class MemoryRig:
    async def client(
        self,
        integration: str,
        service: FakeService | None,
        *,
        call_timeout: float = TIMEOUT,
        failures: int = 3,
        cooldown: float = 10.0,
        clock: ManualClock | None = None,
        cache_seconds: float = 0.0,
        ttl: float = 0.0,
        stale_seconds: float = 3600.0,
    ) -> Any:
        if service is None:
            service = FakeService(lambda *_: {})
            service.fault = "refused"
        return make_client(
            integration,
            service,
            f"memory://{integration}",
            timeout=call_timeout,
            failures=failures,
            cooldown=cooldown,
            clock=clock,
            cache_seconds=cache_seconds,
            ttl=ttl,
            stale_seconds=stale_seconds,
        )


class TestMemoryIntegrations(IntegrationsContract):
    @pytest.fixture
    def integration_rig(self) -> MemoryRig:
        return MemoryRig()
