"""Rate limits shared through Redis: two app instances count against one window."""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlsplit

import pytest
from litestar.testing import TestClient
from policy_http import create_app
from policy_http.testing import bearer, make_settings, make_token, open_memory_services

REDIS_URL = os.environ.get("LLM_POLICY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_up() -> bool:
    parts = urlsplit(REDIS_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_url() -> str:
    if not _redis_up():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is not reachable at {REDIS_URL} (LLM_POLICY_TEST_REDIS_URL)")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    return REDIS_URL


def test_two_instances_share_the_window(redis_url: str) -> None:
    limits = "evaluate=3/minute"
    first = create_app(open_memory_services, make_settings(rate_limits=limits, redis_url=redis_url))
    second = create_app(
        open_memory_services, make_settings(rate_limits=limits, redis_url=redis_url)
    )
    # A principal of its own, so that earlier runs' counters do not interfere.
    headers = bearer(make_token(sub=f"redis-{uuid.uuid4().hex}"))
    body = {"context": {}}
    with TestClient(first) as a, TestClient(second) as b:
        assert a.get("/ready").json()["checks"]["rate_limits"] is True
        statuses = [
            a.post("/api/v1/evaluate", json=body, headers=headers).status_code,
            b.post("/api/v1/evaluate", json=body, headers=headers).status_code,
            a.post("/api/v1/evaluate", json=body, headers=headers).status_code,
            b.post("/api/v1/evaluate", json=body, headers=headers).status_code,
        ]
        assert statuses == [200, 200, 200, 429]
        refused = a.post("/api/v1/evaluate", json=body, headers=headers)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
