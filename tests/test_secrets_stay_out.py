"""Secrets never reach the logs or the audit trail (issue 13).

A server in this process (the memory deployment, JSON logs at DEBUG captured),
called with a bearer JWT and with an API key, evaluates a request carrying a
raw prompt; then every log line and every stored decision record is searched
for the token, the key and the prompt. The prompt is in the audit trail only as
the policy says: a `redact` obligation on `llm.prompt` (pattern pii) keeps the
PII in it (here an e-mail address) out; the rest of the prompt is stored.
"""

from __future__ import annotations

import io
import logging
import uuid
from typing import Any

import msgspec
from litestar.testing import TestClient
from policy_cli.bootstrap import Services
from policy_cli.testing import http_app, memory_settings
from policy_core.ports import HistoryQuery
from policy_http.logs import JsonLogFormatter
from policy_http.testing import bearer, make_token

POLICY = """\
metadata: {id: prompts}
rules:
  - id: redact-prompts
    condition: "true"
    action: {decision: allow}
    obligations:
      - {type: redact, fields: [llm.prompt], pattern: pii}
"""


async def test_no_token_key_or_raw_prompt_in_logs_or_audit_trail() -> None:
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    box: dict[str, Services] = {}
    email = f"alice.{uuid.uuid4().hex}@example.com"
    prompt = f"raw prompt, mail me at {email}"
    try:
        app = http_app(memory_settings(), started=lambda s: box.setdefault("s", s))
        with TestClient(app) as client:
            admin = bearer(make_token(roles=["admin"]))
            created = client.post(
                "/api/v1/policies",
                content=POLICY,
                headers={**admin, "Content-Type": "application/yaml"},
            )
            assert created.status_code == 201, created.text
            made = client.post(
                "/api/v1/api-keys", json={"name": "ci", "roles": ["evaluator"]}, headers=admin
            )
            key = made.json()["key"]
            token = make_token(roles=["evaluator"])
            body = {"context": {"llm": {"prompt": prompt, "model": "m"}}}
            by_token = client.post("/api/v1/evaluate", json=body, headers=bearer(token))
            by_key = client.post("/api/v1/evaluate", json=body, headers={"X-API-Key": key})
            assert by_token.status_code == by_key.status_code == 200
            bad = client.post("/api/v1/evaluate", json=body, headers={"X-API-Key": key + "x"})
            assert bad.status_code == 401
            services = box["s"]
            page = await services.decisions.history(HistoryQuery(), limit=100)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    lines = captured.getvalue().splitlines()
    assert lines, "the scenario logged nothing: the capture is not working"
    records = [msgspec.json.encode(r).decode() for r in page.items]
    assert len(records) == 2
    admin_token = admin["Authorization"].removeprefix("Bearer ")
    for secret in (token, admin_token, key, key + "x", prompt):
        leaked = [line for line in lines if secret in line]
        assert leaked == [], f"{secret[:12]}... in the logs"
    for secret in (token, admin_token, key, email):
        stored: list[Any] = [r for r in records if secret in r]
        assert stored == [], f"{secret[:12]}... in the audit trail: {stored[:1]}"
