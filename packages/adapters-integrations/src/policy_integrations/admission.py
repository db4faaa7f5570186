"""Policy admission: Governance `POST /api/v1/compliance/check` before a policy write.

`ComplianceClient.check` is the core's ComplianceChecker: the body is
`{policy: <document as JSON>, action}`, the answer `{compliant, violations,
recommendations}` decoded strictly (a body that does not fit is an
IntegrationError, which the PolicyService turns into a refused write).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from policy_core.integrations import CallGuard, decode_answer
from policy_core.ports import ComplianceReport

from policy_integrations._http import HttpTransport

__all__ = ["COMPLIANCE_PATH", "ComplianceClient"]

COMPLIANCE_PATH = "/api/v1/compliance/check"
_encoder = msgspec.json.Encoder()


class ComplianceClient:
    def __init__(self, url: str, guard: CallGuard, *, token: str | None = None) -> None:
        self.url, self.guard = url, guard
        self.transport = HttpTransport(url, token=token, timeout=guard.timeout)

    async def check(
        self, document: dict[str, Any], action: Literal["create", "update", "activate"]
    ) -> ComplianceReport:
        body = _encoder.encode({"policy": document, "action": action})

        async def attempt() -> ComplianceReport:
            status, answer = await self.transport.exchange("POST", COMPLIANCE_PATH, body)
            if not 200 <= status < 300:
                raise self.guard.status_error(status)
            return decode_answer("governance", answer, ComplianceReport)

        return await self.guard.run("compliance_check", attempt)

    async def close(self) -> None:
        await self.transport.close()
