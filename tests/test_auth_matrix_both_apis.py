"""One matrix of credentials, sent to the HTTP API and to the gRPC API: the same outcome from both.

Both servers are built the way `llm-policy serve` / `llm-policy grpc serve`
build them: `policy_cli.bootstrap` wires the services and the one
authenticator (HS256 secret, RS256/ES256 keys read from a JWKS file, issuer
and audience), `create_app` / `create_grpc_server` receive them. Each case
asserts the outcome (allowed, or 401 / UNAUTHENTICATED, or 403 /
PERMISSION_DENIED) and, for refusals by the authenticator, the very same
message from both APIs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey
from litestar.testing import AsyncTestClient
from policy_cli.api_settings import grpc_settings, http_settings
from policy_cli.bootstrap import Services, memory
from policy_cli.settings import Settings
from policy_grpc import create_grpc_server
from policy_grpc._generated.llm_policy.v1 import EvaluatePolicyRequest, PolicyServiceStub
from policy_http import create_app

SECRET = "matrix-test-secret-of-at-least-32-bytes"
ISSUER = "https://idp.test"
AUDIENCE = "llm-policy"
RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
EC = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
STRANGER = RSAKey.generate_key(2048, parameters={"kid": "rsa-unknown"})
CONTEXT = {"user": {"id": "u-1"}, "llm": {"model": "gpt-4o-mini", "prompt": "hello"}}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**over: Any) -> dict[str, Any]:
    """Valid claims; a None in `over` removes the claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "svc",
        "roles": ["evaluator"],
        "iat": now,
        "exp": now + 300,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def hs256(**over: Any) -> str:
    return jwt.encode({"alg": "HS256"}, claims(**over), OctKey.import_key(SECRET))


def rs256(kid: str = "rsa-1", key: RSAKey = RSA) -> str:
    return jwt.encode({"alg": "RS256", "kid": kid}, claims(), key)


def alg_none() -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims()).encode())}."


def hs256_with_the_rsa_public_key() -> str:
    # Key confusion: the attacker signs HS256 with the (public) RSA key as the secret.
    header = _b64(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode())
    signing_input = f"{header}.{_b64(json.dumps(claims()).encode())}"
    mac = hmac.new(RSA.as_pem(private=False), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def tampered() -> str:
    # A valid RS256 token whose payload was rewritten to grant admin.
    head, _, signature = rs256().split(".")
    return f"{head}.{_b64(json.dumps(claims(roles=['admin'])).encode())}.{signature}"


@dataclass(frozen=True)
class Case:
    name: str
    token: Callable[[], str]
    outcome: str  # "allowed" | "unauthenticated" | "forbidden"
    message: str = ""  # for "unauthenticated": the message both APIs return


CASES = [
    Case("valid HS256", hs256, "allowed"),
    Case("valid RS256 from the JWKS", rs256, "allowed"),
    Case(
        "valid ES256 from the JWKS",
        lambda: jwt.encode({"alg": "ES256", "kid": "ec-1"}, claims(), EC),
        "allowed",
    ),
    Case("expired", lambda: hs256(exp=int(time.time()) - 120), "unauthenticated", "expired"),
    Case(
        "not yet valid",
        lambda: hs256(nbf=int(time.time()) + 600),
        "unauthenticated",
        "not yet valid",
    ),
    Case("wrong iss", lambda: hs256(iss="https://evil.test"), "unauthenticated", "'iss'"),
    Case("wrong aud", lambda: hs256(aud="another-service"), "unauthenticated", "'aud'"),
    Case("alg none", alg_none, "unauthenticated", "'none'"),
    Case(
        "HS256 signed with the RSA public key",
        hs256_with_the_rsa_public_key,
        "unauthenticated",
        "signature",
    ),
    Case("tampered payload", tampered, "unauthenticated", "signature"),
    Case("unknown kid", lambda: rs256("rsa-unknown", STRANGER), "unauthenticated", "`kid`"),
    Case("missing roles", lambda: hs256(roles=None), "unauthenticated", "'roles'"),
    Case("missing sub", lambda: hs256(sub=None), "unauthenticated", "'sub'"),
    Case("a role without the permission", lambda: hs256(roles=["auditor"]), "forbidden"),
]


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[tuple[Settings, Services]]:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [RSA.as_dict(private=False), EC.as_dict(private=False)]}))
    settings = Settings(
        deployment="memory",
        data_dir=str(tmp_path),
        jwt_secret=SECRET,
        jwks_file=str(jwks),
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    async with memory(settings) as built:
        yield settings, built


async def http_outcome(settings: Settings, services: Services, token: str) -> tuple[str, str]:
    app = create_app(services, msgspec.structs.replace(http_settings(settings), gc_freeze=False))
    async with AsyncTestClient(app) as client:
        response = await client.post(
            "/api/v1/evaluate",
            json={"context": CONTEXT},
            headers={"Authorization": f"Bearer {token}"},
        )
    if response.status_code == 200:
        assert response.json()["allowed"] is True
        return "allowed", ""
    outcome = {401: "unauthenticated", 403: "forbidden"}[response.status_code]
    return outcome, response.json()["detail"]


async def grpc_outcome(settings: Settings, services: Services, token: str) -> tuple[str, str]:
    server = create_grpc_server(services, grpc_settings(settings))
    await server.start("127.0.0.1", 0)
    channel = Channel("127.0.0.1", server.port)
    try:
        stub = PolicyServiceStub(channel, metadata={"authorization": f"Bearer {token}"})
        request = EvaluatePolicyRequest(context_json=json.dumps(CONTEXT).encode())
        try:
            reply = await stub.evaluate_policy(request)
        except GRPCError as exc:
            outcome = {
                Status.UNAUTHENTICATED: "unauthenticated",
                Status.PERMISSION_DENIED: "forbidden",
            }[exc.status]
            return outcome, exc.message or ""
        assert reply.decision is not None
        assert reply.decision.allowed is True
        return "allowed", ""
    finally:
        channel.close()
        await server.drain()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_both_apis_agree_on_every_token(
    services: tuple[Settings, Services], case: Case
) -> None:
    settings, built = services
    token = case.token()
    http = await http_outcome(settings, built, token)
    grpc = await grpc_outcome(settings, built, token)
    assert http[0] == grpc[0] == case.outcome, (http, grpc)
    if case.outcome == "unauthenticated":
        assert http[1] == grpc[1], (http, grpc)
        assert case.message in http[1]
