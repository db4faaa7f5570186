"""The gRPC server over the memory deployment (bootstrap), and a grpclib client with tokens
per role."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from grpclib.client import Channel
from joserfc import jwt
from joserfc.jwk import OctKey
from policy_cli.bootstrap import Services, bootstrap
from policy_cli.testing import grpc_server, memory_settings
from policy_grpc import GrpcServer
from policy_grpc._generated.llm_policy.v1 import (
    EvaluatePolicyRequest,
    PolicyServiceStub,
)

SECRET = "grpc-test-secret-of-at-least-32-bytes!"

POLICY_YAML = """\
metadata: {id: security, name: Security}
rules:
  - id: block-sql
    name: Block SQL
    priority: 10
    condition: "llm.prompt.matches('(?i)select .* from')"
    action: {decision: deny, reason: "SQL for {{ user.id }}"}
    obligations:
      - {type: audit, severity: high, alert: true}
  - id: big-tokens
    name: Big tokens
    condition: "llm.max_tokens > 4000"
    action: {decision: warn, reason: many tokens}
"""


# The memory deployment with this suite's secret (its tokens carry no iss/aud).
SETTINGS = memory_settings(jwt_secret=SECRET, jwt_issuer=None, jwt_audience=None)


@pytest.fixture
async def bundle() -> AsyncIterator[Services]:
    """The services `llm-policy grpc serve` wires (bootstrap), holding POLICY_YAML."""
    async with bootstrap(SETTINGS) as services:
        await services.policies.create(POLICY_YAML, author="setup")
        yield services


def make_token(roles: list[str], *, sub: str = "alice", exp_in: float = 600, **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": sub, "roles": roles, "exp": int(time.time() + exp_in)}
    payload.update(claims)
    return jwt.encode({"alg": "HS256"}, payload, OctKey.import_key(SECRET))


def auth(roles: list[str], **kw: Any) -> dict[str, str]:
    return {"authorization": f"Bearer {make_token(roles, **kw)}"}


# Made once, at import: valid for a day, so that a slow run (a loaded machine,
# three Pythons one after the other) does not outlive it.
ADMIN = auth(["admin"], exp_in=86_400)


@pytest.fixture
async def server(bundle: Services) -> AsyncIterator[GrpcServer]:
    srv = grpc_server(bundle, SETTINGS, drain_seconds=5.0)
    await srv.start("127.0.0.1", 0)
    yield srv
    await srv.drain()


@pytest.fixture
async def channel(server: GrpcServer) -> AsyncIterator[Channel]:
    ch = Channel("127.0.0.1", server.port)
    yield ch
    ch.close()


@pytest.fixture
def stub(channel: Channel) -> PolicyServiceStub:
    return PolicyServiceStub(channel, metadata=ADMIN)


def eval_request(context: dict[str, Any], **kw: Any) -> EvaluatePolicyRequest:
    return EvaluatePolicyRequest(context_json=json.dumps(context).encode(), **kw)


class Kit:
    """Helpers for the tests (conftest is not importable under --import-mode=importlib)."""

    SQL = {"llm": {"prompt": "SELECT * FROM users", "max_tokens": 100}, "user": {"id": "u-1"}}
    OK = {"llm": {"prompt": "hello", "max_tokens": 100}, "user": {"id": "u-2"}}
    POLICY_YAML = POLICY_YAML
    SECRET = SECRET
    ADMIN = ADMIN

    def __init__(self, channel: Channel | None) -> None:
        self._channel = channel

    eval_request = staticmethod(eval_request)
    token = staticmethod(make_token)
    auth = staticmethod(auth)

    def stub(self, metadata: dict[str, str] | None) -> PolicyServiceStub:
        assert self._channel is not None
        return PolicyServiceStub(self._channel, metadata=metadata)


@pytest.fixture
def kit(channel: Channel) -> Kit:
    return Kit(channel)
