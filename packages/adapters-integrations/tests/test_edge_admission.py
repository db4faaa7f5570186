"""The Edge client (deploy queue, sync) and the compliance client against a local receiver."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from policy_core.errors import IntegrationError
from policy_core.integrations import CallGuard
from policy_core.ports import PolicyRecord
from policy_integrations.admission import COMPLIANCE_PATH, ComplianceClient
from policy_integrations.edge import DEPLOY_PATH, SYNC_PATH, EdgeClient, deploy_body
from policy_integrations.receiver import Receiver
from policy_integrations.testing import refused_url

T0 = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


def rec(policy_id: str, revision: int, *, deleted: bool = False) -> PolicyRecord:
    document = {"metadata": {"id": policy_id, "priority": 3}, "status": "active", "rules": []}
    return PolicyRecord(
        id=policy_id,
        namespace="default",
        revision=revision,
        status="active",
        document=document,
        text=json.dumps(document),
        hash="h",
        created_at=T0,
        updated_at=T0,
        deleted=deleted,
    )


def guard(timeout: float = 1.0) -> CallGuard:
    return CallGuard("edge", timeout=timeout, failures=1_000_000)


def test_deploy_body_is_the_contract() -> None:
    key, body = deploy_body(rec("p", 4), "sha256:set", ["eu", "us"])
    assert key == "p:4"
    assert json.loads(body) == {
        "policy": {"metadata": {"id": "p", "priority": 3}, "status": "active", "rules": []},
        "revision": 4,
        "policySet": "sha256:set",
        "regions": ["eu", "us"],
        "priority": 3,
    }
    key, body = deploy_body(rec("p", 5, deleted=True), "sha256:s2")
    assert key == "p:5:deleted"
    assert json.loads(body)["policy"]["status"] == "deleted"


async def test_newer_revisions_supersede_queued_ones_and_survive_a_restart(
    tmp_path: Path,
) -> None:
    url = await refused_url()
    port = int(url.rsplit(":", 1)[1])
    edge = EdgeClient(url, tmp_path, guard(0.5), retry_max=0.1)
    await edge.start()
    for revision in (1, 2, 3):
        edge.deploy(rec("a", revision), f"set{revision}")
    edge.deploy(rec("b", 1), "set4")
    assert edge.pending() == {"a": "a:3", "b": "b:1"}
    await asyncio.sleep(0.3)
    assert edge.status().delivered.get("error", 0) >= 1  # tried, refused, still queued
    assert edge.status().depth == 2
    await edge.close()  # a restart while the agent is down
    again = EdgeClient(url, tmp_path, guard(0.5), retry_max=0.1)
    assert again.pending() == {"a": "a:3", "b": "b:1"}
    async with Receiver(port) as agent:
        await again.start()
        assert await again.drain(30)
        await again.close()
    assert sorted(agent.keys(DEPLOY_PATH)) == ["a:3", "b:1"]  # revisions 1 and 2 never sent
    assert again.status().depth == 0
    assert again.status().delivered["ok"] == 2


async def test_retried_until_acknowledged(tmp_path: Path) -> None:
    async with Receiver() as agent:
        agent.fail_with = 503
        edge = EdgeClient(agent.url, tmp_path, guard(), retry_initial=0.01, retry_max=0.05)
        await edge.start()
        edge.deploy(rec("a", 1), "s")
        assert not await edge.drain(0.3)
        assert edge.status().delivered.get("error", 0) >= 2
        agent.fail_with = None
        assert await edge.drain(30)
        await edge.close()
    assert agent.keys(DEPLOY_PATH) == ["a:1"]
    assert all(h["Idempotency-Key"] == "a:1" for h in agent.headers)


async def test_sync_pushes_the_set_and_raises_when_not_acknowledged(tmp_path: Path) -> None:
    async with Receiver() as agent:
        edge = EdgeClient(agent.url, tmp_path, guard(), token="t0k")
        await edge.sync("sha256:x", [rec("a", 2), rec("b", 1)])
        (body,) = agent.bodies(SYNC_PATH)
        assert body["policySet"] == "sha256:x"
        assert [p["metadata"]["id"] for p in body["policies"]] == ["a", "b"]
        assert agent.headers[0]["Authorization"] == "Bearer t0k"
        agent.fail_with = 500
        with pytest.raises(IntegrationError, match="edge answered HTTP 500"):
            await edge.sync("sha256:x", [])
        await edge.close()


async def test_compliance_client_contract_and_failures() -> None:
    async with Receiver() as governance:
        client = ComplianceClient(governance.url, CallGuard("governance", timeout=1.0))
        report = await client.check({"metadata": {"id": "p"}}, "create")
        assert report.compliant
        assert governance.bodies(COMPLIANCE_PATH) == [
            {"policy": {"metadata": {"id": "p"}}, "action": "create"}
        ]
        governance.compliance = {
            "compliant": False,
            "violations": [
                {"rule": "r1", "severity": "high", "description": "d", "regulation": "GDPR"}
            ],
            "recommendations": ["turn audit on"],
        }
        report = await client.check({}, "activate")
        assert not report.compliant
        assert report.violations[0].rule == "r1"
        assert report.violations[0].regulation == "GDPR"
        governance.compliance = {"compliant": "yes"}
        with pytest.raises(IntegrationError, match="does not fit"):
            await client.check({}, "update")
        governance.fail_with = 503
        with pytest.raises(IntegrationError, match="HTTP 503"):
            await client.check({}, "update")
        await client.close()
    down = ComplianceClient(await refused_url(), CallGuard("governance", timeout=1.0))
    with pytest.raises(IntegrationError, match="unreachable"):
        await down.check({}, "create")
    await down.close()
