"""Authentication in metadata and the roles table, end to end and at the verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey
from policy_grpc._auth import AuthError, JwtVerifier, load_jwks, permissions_of
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


# --- the verifier itself -------------------------------------------------------------------

SECRET = "unit-test-secret-of-at-least-32-bytes"


def _hs(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(secret))


def _claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "bob", "roles": ["auditor"], "exp": int(time.time()) + 60, **extra}


def test_exp_and_sub_are_required() -> None:
    verifier = JwtVerifier(secret=SECRET)
    assert verifier.verify(_hs(_claims())).permissions == permissions_of(["auditor"])
    no_exp = _claims()
    del no_exp["exp"]
    no_sub = _claims()
    del no_sub["sub"]
    for claims in (no_exp, no_sub, _claims(exp=int(time.time()) - 31)):
        with pytest.raises(AuthError):
            verifier.verify(_hs(claims))


def test_leeway_is_at_most_30_seconds() -> None:
    now = time.time()
    verifier = JwtVerifier(secret=SECRET, leeway=300, clock=lambda: now)
    assert verifier.verify(_hs(_claims(exp=int(now) - 20))).id == "bob"
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(_hs(_claims(exp=int(now) - 45)))


def test_issuer_and_audience_are_checked_when_configured() -> None:
    verifier = JwtVerifier(secret=SECRET, issuer="https://idp", audience="llm-policy")
    good = _claims(iss="https://idp", aud="llm-policy")
    assert verifier.verify(_hs(good)).id == "bob"
    for claims in (_claims(), _claims(iss="https://idp", aud="other"), _claims(aud="llm-policy")):
        with pytest.raises(AuthError):
            verifier.verify(_hs(claims))


def test_roles_must_be_a_list_of_names() -> None:
    with pytest.raises(AuthError, match="roles"):
        JwtVerifier(secret=SECRET).verify(_hs(_claims(roles="admin")))


def test_remembered_tokens_still_expire() -> None:
    now = [time.time()]
    verifier = JwtVerifier(secret=SECRET, leeway=0, clock=lambda: now[0])
    token = _hs(_claims(exp=int(now[0]) + 10))
    verifier.verify(token)
    now[0] += 11
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(token)


def test_jwks_keys_pin_their_algorithm(tmp_path: Path) -> None:
    rsa = RSAKey.generate_key(2048, parameters={"kid": "r1"})
    ec = ECKey.generate_key("P-256", parameters={"kid": "e1"})
    path = tmp_path / "jwks.json"
    public = {"keys": [rsa.as_dict(private=False), ec.as_dict(private=False)]}
    path.write_text(json.dumps(public))
    verifier = JwtVerifier(jwks=load_jwks(str(path)))
    rs = jwt.encode({"alg": "RS256", "kid": "r1"}, _claims(), rsa)
    es = jwt.encode({"alg": "ES256", "kid": "e1"}, _claims(), ec)
    assert verifier.verify(rs).id == verifier.verify(es).id == "bob"
    # Algorithm confusion: an HS256 token signed with the RSA public key as secret.
    signing_input = _b64({"alg": "HS256", "typ": "JWT"}) + "." + _b64(_claims())
    mac = hmac.new(rsa.as_pem(private=False), signing_input.encode(), hashlib.sha256).digest()
    confused = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    with pytest.raises(AuthError):
        verifier.verify(confused)
    with pytest.raises(AuthError):  # an RS256 token with an EC kid
        verifier.verify(jwt.encode({"alg": "RS256", "kid": "e1"}, _claims(), rsa))


def test_jwks_files_hold_only_signing_keys(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [OctKey.generate_key(256).as_dict()]}))
    with pytest.raises(ValueError, match="neither an RS256 nor an ES256"):
        load_jwks(str(path))
