"""The write side of the integrations through every API, wired by the composition root.

Governance, CostOps and the Edge agent are one local Receiver (127.0.0.1).
Admission: a non-compliant write is HTTP 422 problem+json listing the
violations, gRPC FAILED_PRECONDITION, CLI exit 3; Governance unreachable is
503 / UNAVAILABLE / exit 4, and nothing is stored. Sinks: an audited decision
reaches `audit/log`, a recorded usage `track`, a policy change `deploy`;
/metrics shows the outboxes.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from litestar.testing import TestClient
from policy_cli.bootstrap import bootstrap
from policy_cli.testing import clean_env, grpc_server, http_app, llm_policy, memory_settings
from policy_grpc._generated.llm_policy.v1 import CreatePolicyRequest, PolicyServiceStub
from policy_http.testing import bearer, make_token
from policy_integrations.receiver import Receiver, ThreadedReceiver
from policy_integrations.testing import refused_url

POLICY = """\
metadata: {id: audited}
config: {audit: all}
rules:
  - id: no-gpt3
    condition: "llm.model == 'gpt-3'"
    action: {decision: deny, reason: old model}
"""
NON_COMPLIANT = {
    "compliant": False,
    "violations": [
        {
            "rule": "eu-ai-act-logging",
            "severity": "high",
            "description": "decisions must be logged",
            "regulation": "EU AI Act",
        }
    ],
    "recommendations": [],
}


def admin() -> dict[str, str]:
    """Admin headers, minted per request: a token minted at import expires (5 minutes) before
    this module runs late in a long suite."""
    return {**bearer(make_token(roles=["admin"])), "Content-Type": "application/yaml"}


@pytest.fixture
def services() -> Iterator[Receiver]:
    with ThreadedReceiver() as receiver:
        yield receiver


def settle(check: Any, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not delivered in time"
        time.sleep(0.02)


def test_http_admission_sinks_edge_and_metrics(services: Receiver, tmp_path: Path) -> None:
    settings = memory_settings(
        governance_url=services.url,
        governance_enforce=True,
        costops_url=services.url,
        edge_url=services.url,
        edge_regions="eu-west, us-east",
        outbox_dir=str(tmp_path / "outbox"),
    )
    with TestClient(http_app(settings)) as client:
        services.compliance = NON_COMPLIANT
        r = client.post("/api/v1/policies", content=POLICY, headers=admin())
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        problem = r.json()
        assert problem["type"] == "urn:llm-policy:problem:policy_not_compliant"
        assert problem["errors"] == [
            {
                "path": "eu-ai-act-logging",
                "line": None,
                "column": None,
                "message": "high: decisions must be logged (EU AI Act)",
            }
        ]
        assert client.get("/api/v1/policies", headers=admin()).json()["items"] == []
        services.fail_with = 503
        r = client.post("/api/v1/policies", content=POLICY, headers=admin())
        assert r.status_code == 503, r.text
        assert r.json()["type"] == "urn:llm-policy:problem:compliance_unavailable"
        services.fail_with = None
        services.compliance = {"compliant": True, "violations": [], "recommendations": []}
        r = client.post("/api/v1/policies", content=POLICY, headers=admin())
        assert r.status_code == 201, r.text
        assert [b["action"] for b in services.bodies("/api/v1/compliance/check")] == [
            "create",
            "create",
        ]  # the 503 answer was not recorded
        # the change reaches the Edge agent
        settle(lambda: services.received["/api/v1/deploy"])
        (deploy,) = services.bodies("/api/v1/deploy")
        assert deploy["revision"] == 1
        assert deploy["regions"] == ["eu-west", "us-east"]
        assert deploy["policy"]["metadata"]["id"] == "audited"
        assert services.keys("/api/v1/deploy") == ["audited:1"]
        # an audited decision reaches Governance's audit log
        r = client.post(
            "/api/v1/evaluate",
            json={"context": {"user": {"id": "u1"}, "llm": {"model": "gpt-3"}}},
            headers={**bearer(make_token(roles=["evaluator"])), "X-Request-ID": "req-42"},
        )
        assert r.status_code == 200, r.text
        request_id = r.json()["request_id"]
        settle(lambda: services.received["/api/v1/audit/log"])
        (audit,) = services.received["/api/v1/audit/log"]
        assert audit.key == request_id
        assert audit.body["eventId"] == request_id
        assert audit.body["decision"] == "deny"
        assert audit.body["userId"] == "u1"
        assert audit.body["model"] == "gpt-3"
        # recorded usage reaches CostOps' track
        r = client.post(
            "/api/v1/usage",
            json={"key": "user:u1", "usd": 0.25, "request_id": "q-7", "model": "gpt-4"},
            headers=bearer(make_token(roles=["admin"])),
        )
        assert r.status_code == 200, r.text
        settle(lambda: services.received["/api/v1/track"])
        (track,) = services.received["/api/v1/track"]
        assert track.key == "q-7"
        assert track.body["cost"] == 0.25
        assert track.body["model"] == "gpt-4"
        metrics = client.get("/metrics").text
        for sink in ("governance_audit", "costops_track", "edge"):
            assert f'llm_policy_outbox_depth{{sink="{sink}"}} 0.0' in metrics
            assert f'llm_policy_outbox_oldest_age_seconds{{sink="{sink}"}}' in metrics
            assert f'llm_policy_outbox_delivered_total{{outcome="ok",sink="{sink}"}} 1.0' in metrics


async def test_grpc_admission_answers_failed_precondition_and_unavailable(tmp_path: Path) -> None:
    async with Receiver() as governance:
        governance.compliance = NON_COMPLIANT
        settings = memory_settings(
            governance_url=governance.url,
            governance_enforce=True,
            outbox_dir=str(tmp_path / "outbox"),
        )
        async with bootstrap(settings) as services:
            server = grpc_server(services, settings)
            await server.start("127.0.0.1", 0)
            channel = Channel("127.0.0.1", server.port)
            token = make_token(roles=["admin"])
            stub = PolicyServiceStub(channel, metadata={"authorization": f"Bearer {token}"})
            try:
                with pytest.raises(GRPCError) as caught:
                    await stub.create_policy(CreatePolicyRequest(document=POLICY))
                assert caught.value.status is Status.FAILED_PRECONDITION
                assert "eu-ai-act-logging (high): decisions must be logged" in str(
                    caught.value.message
                )
                governance.fail_with = 502
                with pytest.raises(GRPCError) as caught:
                    await stub.create_policy(CreatePolicyRequest(document=POLICY))
                assert caught.value.status is Status.UNAVAILABLE
                assert "compliance check could not be made" in str(caught.value.message)
                assert not (await services.policies.list()).items
            finally:
                channel.close()
                await server.drain()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        llm_policy(*args), env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_cli_admission_exit_codes(services: Receiver, tmp_path: Path) -> None:
    policy = tmp_path / "audited.yaml"
    policy.write_text(POLICY)
    env = clean_env(
        LLM_POLICY_DEPLOYMENT="memory",
        LLM_POLICY_GOVERNANCE_URL=services.url,
        LLM_POLICY_GOVERNANCE_ENFORCE="true",
        LLM_POLICY_DATA_DIR=str(tmp_path / "data"),
    )
    services.compliance = NON_COMPLIANT
    done = _cli(env, "policy", "create", str(policy))
    assert done.returncode == 3, done.stderr
    assert "eu-ai-act-logging (high): decisions must be logged" in done.stderr
    down = asyncio.run(refused_url())
    done = _cli({**env, "LLM_POLICY_GOVERNANCE_URL": down}, "policy", "create", str(policy))
    assert done.returncode == 4, done.stderr
    assert "compliance check could not be made" in done.stderr
    services.compliance = {"compliant": True, "violations": [], "recommendations": []}
    done = _cli(env, "policy", "create", str(policy))
    assert done.returncode == 0, done.stderr


def test_enforcement_without_a_governance_url_is_a_settings_error(tmp_path: Path) -> None:
    env = clean_env(LLM_POLICY_DEPLOYMENT="memory", LLM_POLICY_GOVERNANCE_ENFORCE="true")
    done = _cli(env, "config", "show")
    assert done.returncode != 0
    assert "LLM_POLICY_GOVERNANCE_URL is not set" in done.stderr
