"""Fixtures: an app over memory services built in its own event loop, and its client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from policy_http import create_app
from policy_http.testing import (
    MemoryServices,
    bearer,
    make_settings,
    make_token,
    open_memory_services,
)

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

    services: MemoryServices | None = None

    @property
    def svc(self) -> MemoryServices:
        assert self.services is not None, "the app has not started"
        return self.services


def app_with(built: Built, services: dict[str, Any] | None = None, **settings: Any) -> Litestar:
    """An app over memory services built in the app's own event loop (as workers do)."""

    @asynccontextmanager
    async def factory() -> AsyncIterator[MemoryServices]:
        async with open_memory_services(**(services or {})) as svc:
            built.services = svc
            yield svc

    return create_app(factory, make_settings(**settings))


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
