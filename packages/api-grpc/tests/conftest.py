"""A gRPC server over in-memory services, and a grpclib client with tokens per role."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from grpclib.client import Channel
from joserfc import jwt
from joserfc.jwk import OctKey
from policy_core.memory import ManualClock, MemoryApiKeyStore, MemoryDecisionLog, MemoryPolicyStore
from policy_core.services import ApiKeyService, EngineHolder, EvaluationService, PolicyService
from policy_grpc import GrpcServer, GrpcSettings, create_grpc_server
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


@dataclass
class Bundle:
    policies: PolicyService
    evaluation: EvaluationService
    api_keys: ApiKeyService | None
    log: MemoryDecisionLog


@pytest.fixture
async def bundle() -> Bundle:
    clock = ManualClock(1_700_000_000.0)
    store = MemoryPolicyStore(clock)
    holder = EngineHolder()
    policies = PolicyService(reader=store, writer=store, holder=holder)
    await policies.start()
    log = MemoryDecisionLog()
    evaluation = EvaluationService(holder, log=log, clock=clock)
    api_keys = ApiKeyService(MemoryApiKeyStore(), clock)
    await policies.create(POLICY_YAML, author="setup")
    return Bundle(policies=policies, evaluation=evaluation, api_keys=api_keys, log=log)


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
def settings() -> GrpcSettings:
    return GrpcSettings(jwt_secret=SECRET, drain_seconds=5.0)


@pytest.fixture
async def server(bundle: Bundle, settings: GrpcSettings) -> AsyncIterator[GrpcServer]:
    srv = create_grpc_server(bundle, settings)
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
