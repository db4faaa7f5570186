"""The language case files through POST /api/v1/evaluate: exactly the engine's decisions.

One app serves every case (the app `llm-policy serve` builds, over the memory
deployment's adapters with the case's clock and fact ports, and no decision
cache): before each case the test swaps the engine the services hold (compiled from the case's policies, with its default
decision), sets the clock to the case's `now`, and hands its stateful and
integration facts to the case's usage store and integration source
(policy_core.testing.cases.CaseFacts: given facts, else memory fakes). Each HTTP decision is
checked against the case's expectations and compared whole (timing aside)
with the in-process engine's decision for the same input. Load errors and
warnings go through POST /api/v1/policies/validate (422 errors, 200 warnings).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from policy_cli.bootstrap import Services, memory_adapters
from policy_cli.testing import NoDecisionCache, http_app, memory_settings
from policy_core import PolicyEngine, PolicyNotFound, load_policy_text
from policy_core.services import EngineHolder
from policy_core.testing.cases import (
    CaseFacts,
    CaseOptions,
    LanguageCase,
    load_case_files,
    run_case,
)
from policy_http.testing import bearer, make_token

CASES = load_case_files(Path(__file__).parent / "cases")


class CaseClock:
    """System time, or the case's fixed `now`."""

    def __init__(self) -> None:
        self.fixed: float | None = None

    def time(self) -> float:
        return self.fixed if self.fixed is not None else time.time()

    def now(self) -> Any:
        from datetime import UTC, datetime

        return datetime.fromtimestamp(self.time(), UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class CurrentFacts:
    """The usage store and integration source of the case being run (CaseFacts)."""

    def __init__(self) -> None:
        self.current = CaseFacts(CaseOptions())

    async def fetch(self, requests: Any, **kwargs: Any) -> Any:
        return await self.current.fetch(requests, **kwargs)

    async def record_spend(self, *_: Any, **__: Any) -> None:
        return None


class Harness:
    def __init__(self) -> None:
        self.clock = CaseClock()
        self.facts = CurrentFacts()
        # The memory deployment, wired by the composition root, with the case's
        # clock and fact ports in place of the real ones.
        adapters = dataclasses.replace(
            memory_adapters(memory_settings(), self.clock),
            cache=NoDecisionCache(),
            usage=self.facts,
            integrations=self.facts,
        )
        self.services: Services | None = None
        self.app: Litestar = http_app(adapters=adapters, started=self._started)
        self.headers = bearer(make_token(roles=["evaluator"], exp_in=3600))
        self.auditor = {
            **bearer(make_token(roles=["auditor"], exp_in=3600)),
            "Content-Type": "application/yaml",
        }

    def _started(self, services: Services) -> None:
        self.services = services

    @property
    def holder(self) -> EngineHolder:
        assert self.services is not None, "the app has not started"
        return self.services.holder

    def prepare(self, case: LanguageCase) -> PolicyEngine:
        opts = case.options
        engine = PolicyEngine(
            load_policy_text(case.policies, file=case.id),
            default_decision=opts.default_decision,
        )
        self.holder.swap(engine)
        self.clock.fixed = opts.now
        self.facts.current = CaseFacts(opts)
        return engine


@pytest.fixture(scope="module")
def harness() -> Iterator[tuple[Harness, TestClient[Litestar]]]:
    h = Harness()
    with TestClient(h.app) as client:
        yield h, client


def _untimed(decision: Mapping[str, Any]) -> dict[str, Any]:
    out = {
        k: v for k, v in decision.items() if k not in ("evaluation_time_ms", "request_id", "cached")
    }
    if isinstance(out.get("shadow"), dict):
        out["shadow"] = _untimed(out["shadow"])
    return out


def _param(case: LanguageCase) -> Any:
    marks = [pytest.mark.xfail(reason=case.xfail, strict=True)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


def test_every_case_is_collected() -> None:
    assert sum(c.evaluates for c in CASES) >= 100


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_language_case_over_http(
    harness: tuple[Harness, TestClient[Litestar]], case: LanguageCase
) -> None:
    h, client = harness
    opts = case.options

    def evaluate(c: LanguageCase) -> Mapping[str, Any]:
        engine = h.prepare(c)
        body: dict[str, Any] = {"context": c.context, "trace": opts.trace}
        if opts.policies is not None:
            body["policies"] = list(opts.policies)
        if opts.namespace is not None:
            body["namespace"] = opts.namespace
        if c.response is not None:  # spec 7.1: the response endpoint judges it
            body["response"] = c.response
            r = client.post("/api/v1/evaluate/response", json=body, headers=h.headers)
        else:
            r = client.post("/api/v1/evaluate", json=body, headers=h.headers)
        if r.status_code == 404 and r.json()["type"].endswith("policy_not_found"):
            raise PolicyNotFound(str(opts.policies))
        assert r.status_code == 200, r.text
        decision: dict[str, Any] = r.json()
        facts = CaseFacts(opts)
        if c.response is not None:
            judged = asyncio.run(
                engine.evaluate_response_async(
                    c.context,
                    c.response,
                    usage=facts,
                    integrations=facts,
                    policies=list(opts.policies) if opts.policies is not None else None,
                    namespace=opts.namespace,
                    trace=opts.trace,
                    now=opts.now,
                )
            )
            assert _untimed(decision) == _untimed(
                msgspec.json.decode(msgspec.json.encode(judged))
            ), "the HTTP decision differs from the engine's"
            return decision
        direct = asyncio.run(
            engine.evaluate_async(
                c.context,
                usage=facts,
                integrations=facts,
                policies=list(opts.policies) if opts.policies is not None else None,
                namespace=opts.namespace,
                trace=opts.trace,
                now=opts.now,
            )
        )
        assert _untimed(decision) == _untimed(msgspec.json.decode(msgspec.json.encode(direct))), (
            "the HTTP decision differs from the engine's"
        )
        return decision

    def validate(c: LanguageCase) -> tuple[list[Any], list[Any]]:
        r = client.post("/api/v1/policies/validate", content=c.policies, headers=h.auditor)
        if r.status_code in (400, 422):
            return r.json()["errors"], []
        assert r.status_code == 200, r.text
        return [], r.json()["warnings"]

    mismatches = run_case(
        case,
        evaluate,
        load_issues=lambda c: validate(c)[0],
        warnings=lambda c: validate(c)[1],
    )
    assert not mismatches, f"{case.id}:\n  " + "\n  ".join(mismatches)
