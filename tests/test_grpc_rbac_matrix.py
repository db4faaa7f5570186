"""RBAC over every RPC of llm_policy.v1.PolicyService: roles x RPCs, allowed or denied
as docs/grpc.md's table says. The RPCs are read from the server's own handler
table, so an RPC added without an entry here fails the matrix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError
from policy_cli.api_settings import grpc_settings
from policy_cli.bootstrap import memory
from policy_cli.settings import Settings
from policy_core.access import ROLE_PERMISSIONS
from policy_grpc import create_grpc_server

from tests.test_auth_matrix_both_apis import AUDIENCE, ISSUER, SECRET, hs256

SERVICE = "/llm_policy.v1.PolicyService/"
# docs/grpc.md, "Authentication and roles".
PERMISSION = {
    "EvaluatePolicy": "evaluate",
    "EvaluatePolicyStream": "evaluate",
    "EvaluateResponse": "evaluate",
    "JudgeResponseStream": "evaluate",
    "GetPolicy": "policies:read",
    "ListPolicies": "policies:read",
    "ValidatePolicy": "policies:read",
    "CreatePolicy": "policies:write",
    "UpdatePolicy": "policies:write",
    "DeletePolicy": "policies:delete",
}
ROLES = sorted(ROLE_PERMISSIONS)


class Raw(CodecBase):
    """Sends bytes as they are (an empty request message): authorization comes first."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Any]:
    settings = Settings(
        deployment="memory",
        data_dir=str(tmp_path),
        jwt_secret=SECRET,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    async with memory(settings) as services:
        srv = create_grpc_server(services, grpc_settings(settings))
        await srv.start("127.0.0.1", 0)
        try:
            yield srv
        finally:
            await srv.drain()


def test_every_rpc_has_a_matrix_entry(server: Any) -> None:
    rpcs = {name.removeprefix(SERVICE) for name in server.service.__mapping__()}
    assert rpcs == set(PERMISSION), "give each RPC its permission in PERMISSION (docs/grpc.md)"


async def status_of(port: int, rpc: str, role: str, cardinality: Cardinality) -> Status:
    channel = Channel("127.0.0.1", port, codec=Raw())
    try:
        async with channel.request(
            SERVICE + rpc,
            cardinality,
            bytes,
            bytes,
            metadata={"authorization": f"Bearer {hs256(roles=[role])}"},
        ) as stream:
            await stream.send_message(b"", end=True)
            try:
                await stream.recv_message()
                await stream.recv_trailing_metadata()
            except GRPCError as exc:
                return exc.status
        return Status.OK
    finally:
        channel.close()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("rpc", sorted(PERMISSION))
async def test_role_x_rpc(server: Any, rpc: str, role: str) -> None:
    handler = server.service.__mapping__()[SERVICE + rpc]
    status = await status_of(server.port, rpc, role, handler.cardinality)
    if PERMISSION[rpc] in ROLE_PERMISSIONS[role]:
        assert status not in (Status.PERMISSION_DENIED, Status.UNAUTHENTICATED), status
    else:
        assert status == Status.PERMISSION_DENIED
