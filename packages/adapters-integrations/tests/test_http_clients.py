"""The aiohttp clients pass the integrations contract suite against local fake servers.

Every server listens on 127.0.0.1 (policy_integrations.testing.FakeServer)
and answers as its policy_core FakeService decides; a refused connection is
a 127.0.0.1 port nothing listens on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from policy_core.clock import ManualClock
from policy_core.integrations import FakeService
from policy_core.testing import IntegrationsContract
from policy_core.testing.integrations_contract import CALLER, TIMEOUT, shield_service
from policy_integrations import BreakerSettings, CostOpsClient, GovernanceClient, ShieldClient
from policy_integrations.testing import FakeServer, refused_url


class HttpRig:
    def __init__(self) -> None:
        self.servers: list[FakeServer] = []
        self.clients: list[Any] = []

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
        token: str | None = None,
    ) -> Any:
        if service is None:
            url = await refused_url()
        else:
            server = await FakeServer(service).start()
            self.servers.append(server)
            url = server.url
        breaker = BreakerSettings(
            timeout=call_timeout, failures=failures, cooldown=cooldown, clock=clock
        )
        client: Any
        if integration == "shield":
            client = ShieldClient(url, token=token, breaker=breaker, cache_seconds=cache_seconds)
        elif integration == "costops":
            client = CostOpsClient(url, token=token, breaker=breaker)
        else:
            client = GovernanceClient(
                url, token=token, breaker=breaker, ttl=ttl, stale_seconds=stale_seconds
            )
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for server in self.servers:
            await server.stop()


@pytest.fixture
async def http_rig() -> AsyncIterator[HttpRig]:
    rig = HttpRig()
    try:
        yield rig
    finally:
        await rig.close()


class TestHttpIntegrations(IntegrationsContract):
    @pytest.fixture
    def integration_rig(self, http_rig: HttpRig) -> HttpRig:
        return http_rig


async def test_the_token_is_a_bearer_header(http_rig: HttpRig) -> None:
    service = shield_service()
    shield = await http_rig.client("shield", service, token="s3cret")
    await shield.scan("hello", "gpt-4o", CALLER)
    headers = http_rig.servers[0].headers[0]
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["Content-Type"] == "application/json"
    assert shield.state().url == http_rig.servers[0].url


async def test_without_a_token_no_authorization_is_sent(http_rig: HttpRig) -> None:
    governance = await http_rig.client("governance", FakeService(lambda *_: {"models": []}))
    assert await governance.approved_models() == ()
    assert "Authorization" not in http_rig.servers[0].headers[0]


async def test_one_session_per_client_reused_and_closed(http_rig: HttpRig) -> None:
    shield = await http_rig.client("shield", shield_service())
    await shield.scan("a", None, CALLER)
    session = shield.http._session
    await shield.scan("b", None, CALLER)
    assert shield.http._session is session
    await shield.close()
    assert session is not None
    assert session.closed
