"""Fixtures: the app `llm-policy serve` builds, over the memory deployment, and its client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from policy_cli.bootstrap import Adapters, Services, memory_adapters
from policy_cli.settings import Settings
from policy_cli.testing import http_app, memory_settings
from policy_core.memory import MemoryDecisionLog, SystemClock
from policy_http.testing import bearer, make_token

POLICY_YAML = """\
metadata:
  id: p1
  name: First policy
  tags: [security]
rules:
  - id: big-requests
    name: Big requests
    condition: "llm.max_tokens > 1000"
    action: {decision: deny, reason: too many tokens}
"""
YAML = {"Content-Type": "application/yaml"}


def policy_yaml(policy_id: str = "p1", limit: int = 1000, extra: str = "") -> str:
    """A one-rule policy document (deny when llm.max_tokens > limit)."""
    return POLICY_YAML.replace("id: p1", f"id: {policy_id}").replace("1000", str(limit)) + extra


class Built:
    """The services an app built at startup (factory mode), for tests to look at."""

    def __init__(self) -> None:
        self.adapters: Adapters | None = None
        self.services: Services | None = None

    def record(self, services: Services) -> None:
        self.services = services

    @property
    def svc(self) -> Services:
        assert self.services is not None, "the app has not started"
        return self.services

    @property
    def log(self) -> MemoryDecisionLog:
        """The decision log adapter behind the services."""
        assert self.adapters is not None
        assert isinstance(self.adapters.log, MemoryDecisionLog)
        return self.adapters.log


def app_with(built: Built, settings: Settings | None = None, **http: Any) -> Litestar:
    """The app `llm-policy serve` builds over the memory deployment's adapters (wired at
    startup, in the app's own event loop, as workers do); `http` replaces HttpSettings fields."""
    chosen = settings or memory_settings()
    built.adapters = memory_adapters(chosen, SystemClock())
    return http_app(chosen, adapters=built.adapters, started=built.record, **http)


@pytest.fixture
def built() -> Built:
    return Built()


@pytest.fixture
def app(built: Built) -> Litestar:
    return app_with(built)


@pytest.fixture
def client(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def admin() -> dict[str, str]:
    return bearer(make_token(roles=["admin"]))


@pytest.fixture
def seeded(client: TestClient[Litestar], admin: dict[str, str]) -> TestClient[Litestar]:
    """A client whose app holds policy p1 at revision 1."""
    r = client.post("/api/v1/policies", content=policy_yaml(), headers={**admin, **YAML})
    assert r.status_code == 201, r.text
    return client
