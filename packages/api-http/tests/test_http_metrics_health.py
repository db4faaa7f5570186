"""The metrics alerts need beyond request counts: rule errors recorded in decisions
(`llm_policy_evaluation_errors_total`), readiness (`llm_policy_ready`) and the age of
the oldest spooled decision record (`llm_policy_decision_log_spool_oldest_age_seconds`)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

from litestar import Litestar
from litestar.testing import TestClient
from policy_cli.bootstrap import Services, memory_adapters
from policy_cli.testing import http_app, memory_settings
from policy_core.memory import MemoryDecisionLog, SystemClock
from policy_core.ports import DecisionLogCounters
from policy_http._runtime import Runtime
from policy_http.routes_ops import readiness
from policy_http.testing import make_settings

from .conftest import YAML

E = "/api/v1/evaluate"
FAILING = """\
metadata: {id: ratio}
rules:
  - id: share
    condition: "llm.max_tokens / user.quota > 0.5"
    action: {decision: warn, reason: large share}
"""
SOUND = """\
metadata: {id: sound}
rules:
  - id: big
    condition: "llm.max_tokens > 1000"
    action: {decision: deny, reason: too big}
"""


def metric(text: str, name: str) -> str | None:
    """The value of one sample line `name` (with its labels), or None when absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return line.split(" ", 1)[1]
    return None


def context(tokens: int, quota: int = 0) -> dict[str, object]:
    return {"llm": {"max_tokens": tokens}, "user": {"quota": quota}}


def test_rule_errors_are_counted_per_policy_once_per_evaluation(
    client: TestClient[Litestar], admin: dict[str, str]
) -> None:
    for document in (FAILING, SOUND):
        r = client.post("/api/v1/policies", content=document, headers={**admin, **YAML})
        assert r.status_code == 201, r.text
    first = client.post(E, json={"context": context(10)}, headers=admin).json()
    assert [e["policy"] for e in first["errors"]] == ["ratio"]
    again = client.post(E, json={"context": context(10)}, headers=admin).json()
    assert again["cached"] is True  # a cached decision evaluated nothing: not counted again
    text = client.get("/metrics").text
    assert metric(text, 'llm_policy_evaluation_errors_total{policy="ratio"}') == "1.0"
    batch = {"requests": [{"context": context(n)} for n in (11, 12, 13)]}
    batch["requests"].append({"context": context(14, quota=100)})  # no error: quota > 0
    r = client.post(f"{E}/batch", json=batch, headers=admin)
    assert [len(d["errors"]) for d in r.json()["decisions"]] == [1, 1, 1, 0]
    text = client.get("/metrics").text
    assert metric(text, 'llm_policy_evaluation_errors_total{policy="ratio"}') == "4.0"
    assert 'llm_policy_evaluation_errors_total{policy="sound"}' not in text
    assert "# TYPE llm_policy_evaluation_errors_total counter" in text


def test_ready_gauge_follows_the_readiness_checks() -> None:
    holder: dict[str, Services] = {}
    app = http_app(started=lambda svc: holder.setdefault("svc", svc))
    with TestClient(app) as client:
        assert client.get("/ready").status_code == 200
        assert metric(client.get("/metrics").text, "llm_policy_ready") == "1.0"

        async def down() -> bool:
            return False

        holder["svc"].checks["store"] = down
        assert client.get("/ready").status_code == 503
        assert metric(client.get("/metrics").text, "llm_policy_ready") == "0.0"
        del holder["svc"].checks["store"]
        assert metric(client.get("/metrics").text, "llm_policy_ready") == "1.0"


def test_a_server_still_starting_is_not_ready() -> None:
    runtime = Runtime(make_settings(), None)  # no services bound yet
    checks = asyncio.run(readiness(runtime))
    assert checks == {"services": False, "rate_limits": False}
    assert metric(runtime.metrics.render(ready=False).decode(), "llm_policy_ready") == "0.0"


def spool_app(oldest: datetime | None) -> Litestar:
    class SpoolingLog(MemoryDecisionLog):
        def counters(self) -> DecisionLogCounters:
            return DecisionLogCounters(spool_bytes=512, spool_oldest=oldest)

    log = SpoolingLog()
    adapters = dataclasses.replace(
        memory_adapters(memory_settings(), SystemClock()), log=log, history=log
    )
    return http_app(adapters=adapters)


def test_spool_oldest_age_is_now_minus_the_oldest_record() -> None:
    oldest = datetime(2020, 1, 1, tzinfo=UTC)
    before = (datetime.now(UTC) - oldest).total_seconds()
    with TestClient(spool_app(oldest)) as client:
        text = client.get("/metrics").text
    after = (datetime.now(UTC) - oldest).total_seconds()
    value = metric(text, "llm_policy_decision_log_spool_oldest_age_seconds")
    assert value is not None
    assert before <= float(value) <= after


def test_an_empty_spool_has_age_zero() -> None:
    with TestClient(spool_app(None)) as client:
        text = client.get("/metrics").text
    assert metric(text, "llm_policy_decision_log_spool_oldest_age_seconds") == "0.0"
