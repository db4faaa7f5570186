"""The admin RPCs and their status codes, through the generated grpclib stub."""

from __future__ import annotations

from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from policy_grpc._generated.llm_policy.v1 import (
    CreatePolicyRequest,
    DeletePolicyRequest,
    GetPolicyRequest,
    ListPoliciesRequest,
    PolicyServiceStub,
    UpdatePolicyRequest,
    ValidatePolicyRequest,
)

COST_YAML = """\
metadata: {id: cost, name: Cost, namespace: finance, tags: [money]}
rules:
  - id: cap
    name: Cap
    condition: "llm.max_tokens > 8000"
    action: {decision: deny, reason: too many tokens}
"""


async def _status_of(call: Any) -> tuple[Status, str]:
    with pytest.raises(GRPCError) as caught:
        await call
    return caught.value.status, caught.value.message or ""


async def test_create_returns_the_stored_revision(stub: PolicyServiceStub) -> None:
    reply = await stub.create_policy(CreatePolicyRequest(document=COST_YAML))
    policy = reply.policy
    assert policy is not None
    assert (policy.id, policy.namespace, policy.revision, policy.status) == (
        "cost",
        "finance",
        1,
        "active",
    )
    assert policy.etag == "cost:1"
    assert policy.document is not None
    assert policy.document.to_dict()["metadata"]["id"] == "cost"
    assert policy.created_at.endswith("Z")


async def test_create_errors(stub: PolicyServiceStub) -> None:
    await stub.create_policy(CreatePolicyRequest(document=COST_YAML))
    status, message = await _status_of(stub.create_policy(CreatePolicyRequest(document=COST_YAML)))
    assert status is Status.ALREADY_EXISTS
    assert "'cost'" in message
    bad = COST_YAML.replace("priority", "x").replace("name: Cap", "name: Cap\n    priorty: 3")
    status, message = await _status_of(stub.create_policy(CreatePolicyRequest(document=bad)))
    assert status is Status.INVALID_ARGUMENT
    assert "<request>:5:5: unknown key" in message  # file:line:column


async def test_get_current_and_past_revisions(stub: PolicyServiceStub) -> None:
    await stub.create_policy(CreatePolicyRequest(document=COST_YAML))
    updated = COST_YAML.replace("8000", "9000")
    reply = await stub.update_policy(
        UpdatePolicyRequest(id="cost", document=updated, expected_revision=1)
    )
    assert reply.policy is not None
    assert reply.policy.revision == 2
    current = (await stub.get_policy(GetPolicyRequest(id="cost"))).policy
    first = (await stub.get_policy(GetPolicyRequest(id="cost", revision=1))).policy
    assert current is not None
    assert first is not None
    assert current.revision == 2
    assert "9000" in str(current.document.to_dict() if current.document else "")
    assert first.revision == 1
    assert (await _status_of(stub.get_policy(GetPolicyRequest(id="cost", revision=7))))[
        0
    ] is Status.NOT_FOUND
    assert (await _status_of(stub.get_policy(GetPolicyRequest(id="nope"))))[0] is Status.NOT_FOUND
    assert (await _status_of(stub.get_policy(GetPolicyRequest())))[0] is Status.INVALID_ARGUMENT


async def test_update_needs_the_current_revision(stub: PolicyServiceStub) -> None:
    await stub.create_policy(CreatePolicyRequest(document=COST_YAML))
    stale = UpdatePolicyRequest(id="cost", document=COST_YAML, expected_revision=5)
    status, message = await _status_of(stub.update_policy(stale))
    assert status is Status.FAILED_PRECONDITION
    assert "revision 1" in message
    missing = UpdatePolicyRequest(id="cost", document=COST_YAML)
    status, message = await _status_of(stub.update_policy(missing))
    assert status is Status.INVALID_ARGUMENT
    assert "expected_revision" in message
    renamed = UpdatePolicyRequest(id="other", document=COST_YAML, expected_revision=1)
    assert (await _status_of(stub.update_policy(renamed)))[0] in (
        Status.INVALID_ARGUMENT,
        Status.NOT_FOUND,
    )


async def test_delete_is_soft_and_not_found_after(stub: PolicyServiceStub) -> None:
    await stub.create_policy(CreatePolicyRequest(document=COST_YAML))
    await stub.delete_policy(DeletePolicyRequest(id="cost"))
    assert (await _status_of(stub.get_policy(GetPolicyRequest(id="cost"))))[0] is Status.NOT_FOUND
    old = await stub.get_policy(GetPolicyRequest(id="cost", revision=1))
    assert old.policy is not None
    assert old.policy.revision == 1
    status, _ = await _status_of(stub.delete_policy(DeletePolicyRequest(id="cost")))
    assert status is Status.NOT_FOUND


async def test_list_pages_and_filters(stub: PolicyServiceStub) -> None:
    await stub.create_policy(CreatePolicyRequest(document=COST_YAML))
    first = await stub.list_policies(ListPoliciesRequest(page_size=1))
    assert [p.id for p in first.policies] == ["cost"]
    assert first.next_page_token
    second = await stub.list_policies(
        ListPoliciesRequest(page_size=1, page_token=first.next_page_token)
    )
    assert [p.id for p in second.policies] == ["security"]
    assert second.next_page_token == ""
    finance = await stub.list_policies(ListPoliciesRequest(namespace="finance"))
    assert [p.id for p in finance.policies] == ["cost"]
    tagged = await stub.list_policies(ListPoliciesRequest(tag="money"))
    assert [p.id for p in tagged.policies] == ["cost"]
    status, _ = await _status_of(stub.list_policies(ListPoliciesRequest(status="gone")))
    assert status is Status.INVALID_ARGUMENT
    status, _ = await _status_of(stub.list_policies(ListPoliciesRequest(page_size=5000)))
    assert status is Status.INVALID_ARGUMENT


async def test_validate_reports_errors_and_warnings(stub: PolicyServiceStub) -> None:
    ok = await stub.validate_policy(ValidatePolicyRequest(document=COST_YAML))
    assert ok.valid is True
    assert ok.policy_ids == ["cost"]
    assert ok.errors == []
    never = COST_YAML.replace('"llm.max_tokens > 8000"', '"1 > 2"')
    warned = await stub.validate_policy(ValidatePolicyRequest(document=never))
    assert warned.valid is True
    assert warned.warnings
    assert (warned.warnings[0].line, warned.warnings[0].column) == (3, 9)
    assert "never match" in warned.warnings[0].message
    bad = await stub.validate_policy(
        ValidatePolicyRequest(document=COST_YAML.replace("deny", "block"))
    )
    assert bad.valid is False
    assert bad.errors
    assert (bad.errors[0].line, bad.errors[0].column) == (6, 24)
    assert bad.policy_ids == []
