"""Authentication in metadata and the roles table, end to end.

The verifier itself is the core's (packages/policy-core/tests/test_auth.py).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from policy_grpc._generated.llm_policy.v1 import (
    CreatePolicyRequest,
    DeletePolicyRequest,
    EvaluatePolicyStreamRequest,
    ListPoliciesRequest,
)


async def _status(call: Any) -> Status:
    with pytest.raises(GRPCError) as caught:
        await call
    return caught.value.status


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_missing_and_invalid_credentials_are_unauthenticated(kit: Any) -> None:
    ok = kit.eval_request(kit.OK)
    expired = kit.auth(["admin"], exp_in=-120)
    unsigned = {"authorization": "Bearer " + _b64({"alg": "none"}) + "." + _b64({"sub": "x"}) + "."}
    forged = {"authorization": "Bearer " + kit.token(["admin"])[:-4] + "AAAA"}
    for metadata in (
        None,
        expired,
        unsigned,
        forged,
        {"authorization": "Basic abc"},
        {"x-api-key": "lpk_nope_nope"},
    ):
        assert await _status(kit.stub(metadata).evaluate_policy(ok)) is Status.UNAUTHENTICATED


async def test_roles_grant_the_interface_permissions(kit: Any) -> None:
    auditor, evaluator = kit.stub(kit.auth(["auditor"])), kit.stub(kit.auth(["evaluator"]))
    admin = kit.stub(kit.auth(["policy-admin"]))
    request = kit.eval_request(kit.OK)
    assert await _status(auditor.evaluate_policy(request)) is Status.PERMISSION_DENIED
    assert (await evaluator.evaluate_policy(request)).decision is not None
    assert (await auditor.list_policies(ListPoliciesRequest())).policies
    document = CreatePolicyRequest(document=kit.POLICY_YAML.replace("security", "other"))
    assert await _status(evaluator.create_policy(document)) is Status.PERMISSION_DENIED
    assert await _status(auditor.create_policy(document)) is Status.PERMISSION_DENIED
    await admin.create_policy(document)
    await admin.delete_policy(DeletePolicyRequest(id="other"))
    unknown_role = kit.stub(kit.auth(["root"]))
    assert await _status(unknown_role.list_policies(ListPoliciesRequest())) is (
        Status.PERMISSION_DENIED
    )


async def test_a_stream_needs_the_evaluate_permission(kit: Any) -> None:
    stream = kit.stub(kit.auth(["auditor"])).evaluate_policy_stream(
        [EvaluatePolicyStreamRequest(request=kit.eval_request(kit.OK))]
    )
    with pytest.raises(GRPCError) as caught:
        async for _ in stream:
            pass
    assert caught.value.status is Status.PERMISSION_DENIED


async def test_api_keys_work_until_revoked(kit: Any, bundle: Any) -> None:
    key, record = await bundle.api_keys.create("gateway", ["evaluator"])
    other, other_record = await bundle.api_keys.create("old", ["evaluator"])
    await bundle.api_keys.revoke(other_record.id)
    reply = await kit.stub({"x-api-key": key}).evaluate_policy(kit.eval_request(kit.OK))
    assert reply.decision is not None
    assert reply.decision.allowed is True
    denied = kit.stub({"x-api-key": key}).list_policies(ListPoliciesRequest())
    assert await _status(denied) is Status.PERMISSION_DENIED
    revoked = kit.stub({"x-api-key": other}).evaluate_policy(kit.eval_request(kit.OK))
    assert await _status(revoked) is Status.UNAUTHENTICATED
    assert record.id != other_record.id
