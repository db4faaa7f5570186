"""The language case files (tests/cases) through the gRPC API.

Each evaluating case goes through EvaluatePolicy, and all of them together
through ONE EvaluatePolicyStream; load errors and warnings go through
ValidatePolicy. Behind the server, a router picks, by request_id, the
EvaluationService of that case: the memory deployment wired by the
composition root over the case's clock and facts, holding its policies, so
one stream can carry cases with different policy sets.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from policy_cli.bootstrap import bootstrap, memory_adapters, wired
from policy_cli.settings import Settings
from policy_cli.testing import NoDecisionCache, grpc_server, memory_settings
from policy_core import PolicyEngine, PolicyLoadError, errors as core_errors, load_policy_text
from policy_core.auth import CredentialAuthenticator
from policy_core.memory import ManualClock, SystemClock
from policy_core.services import EvaluationRequest, EvaluationResult, ResponseEvaluationRequest
from policy_core.testing.cases import CaseFacts, LanguageCase, load_case_files, run_case
from policy_grpc._generated.llm_policy.v1 import (
    Decision,
    EvaluatePolicyRequest,
    EvaluatePolicyStreamRequest,
    EvaluateResponseRequest,
    PolicyServiceStub,
    ValidatePolicyRequest,
)

ALL_CASES = load_case_files(Path(__file__).resolve().parents[3] / "tests" / "cases")
# Response-phase cases (spec 7.1) go through EvaluateResponse, the others through
# EvaluatePolicy and the stream.
CASES = [c for c in ALL_CASES if c.response is None]
EVALUATING = [c for c in CASES if c.evaluates and not c.xfail]
RESPONDING = [c for c in ALL_CASES if c.response is not None and c.evaluates and not c.xfail]


@asynccontextmanager
async def _case_evaluation(settings: Settings, case: LanguageCase) -> AsyncIterator[Any]:
    """The memory deployment wired over the case's clock and facts, holding its engine."""
    opts = case.options
    engine = PolicyEngine(
        load_policy_text(case.policies, file=case.id), default_decision=opts.default_decision
    )
    facts = CaseFacts(opts)
    clock = ManualClock(opts.now) if opts.now is not None else SystemClock()
    adapters = dataclasses.replace(
        memory_adapters(settings, clock),
        cache=NoDecisionCache(),
        usage=facts,
        integrations=facts,
    )
    async with wired(settings, adapters) as services:
        services.holder.swap(engine)
        yield services.evaluation


class _Router:
    """An EvaluationService look-alike dispatching on request_id (the case id)."""

    def __init__(self) -> None:
        self.services: dict[str, Any] = {}

    async def evaluate(self, request: EvaluationRequest) -> EvaluationResult:
        return await self.services[request.request_id or ""].evaluate(request)

    async def evaluate_response(self, request: ResponseEvaluationRequest) -> EvaluationResult:
        return await self.services[request.request_id or ""].evaluate_response(request)


@pytest.fixture
async def case_stub() -> AsyncIterator[PolicyServiceStub]:
    settings = memory_settings()
    async with AsyncExitStack() as stack:
        router = _Router()
        for case in EVALUATING + RESPONDING:
            router.services[case.id] = await stack.enter_async_context(
                _case_evaluation(settings, case)
            )
        front = await stack.enter_async_context(bootstrap(settings))
        services = dataclasses.replace(front, evaluation=router)
        server = grpc_server(
            dataclasses.replace(services, authenticator=CredentialAuthenticator(anonymous=True)),
            settings,
        )
        await server.start("127.0.0.1", 0)
        channel = Channel("127.0.0.1", server.port)
        yield PolicyServiceStub(channel)
        channel.close()
        await server.drain()


def _request(case: LanguageCase) -> EvaluatePolicyRequest:
    opts = case.options
    return EvaluatePolicyRequest(
        request_id=case.id,
        context_json=json.dumps(case.context).encode(),
        policies=list(opts.policies or ()),
        namespace=opts.namespace or "",
        trace=opts.trace,
    )


def as_builtins(message: Decision) -> dict[str, Any]:
    """A Decision message in the engine's `msgspec.to_builtins` form."""
    return {
        "decision": message.decision,
        "allowed": message.allowed,
        "reason": message.reason,
        "matched_policies": list(message.matched_policies),
        "matched_rules": list(message.matched_rules),
        "matched_exceptions": list(message.matched_exceptions),
        "warnings": list(message.warnings),
        "modifications": message.modifications.to_dict() if message.modifications else {},
        "obligations": [o.to_dict() for o in message.obligations],
        "metadata": message.metadata.to_dict() if message.metadata else {},
        "errors": [e.to_dict() for e in message.errors],
        "shadow": message.shadow.to_dict() if message.shadow is not None else None,
        "policy_set": message.policy_set,
        "evaluation_time_ms": message.evaluation_time_ms,
        "trace": message.trace.to_dict() if message.trace is not None else None,
        "reservation": message.reservation.to_dict() if message.reservation is not None else None,
    }


def _error_class(code: str) -> type[Exception]:
    for name in core_errors.__all__:
        cls = getattr(core_errors, name)
        if getattr(cls, "code", None) == code:
            return type(name, (cls,), {"__init__": Exception.__init__})
    return RuntimeError


def _raise_for_error_decision(message: Decision) -> None:
    """A stream answers a failed request with an error decision: turn it back into the error."""
    meta = message.metadata.to_dict() if message.metadata else {}
    if "error" in meta and not message.matched_rules:
        raise _error_class(str(meta["error"]["code"]))(message.reason)


def _unary_error(exc: GRPCError) -> Exception:
    if exc.status is Status.NOT_FOUND:
        return _error_class("policy_not_found")(exc.message)
    return exc


def test_there_are_cases_to_run() -> None:
    assert len(EVALUATING) >= 50


async def test_cases_through_evaluate_policy(case_stub: PolicyServiceStub) -> None:
    answers: dict[str, Any] = {}
    for case in EVALUATING:
        try:
            reply = await case_stub.evaluate_policy(_request(case))
            assert reply.decision is not None
            assert reply.decision.request_id == case.id
            answers[case.id] = as_builtins(reply.decision)
        except GRPCError as exc:
            answers[case.id] = _unary_error(exc)
    failures = await _compare(answers)
    assert not failures, "\n".join(failures)


async def test_cases_through_one_stream(case_stub: PolicyServiceStub) -> None:
    requests = [EvaluatePolicyStreamRequest(request=_request(c)) for c in EVALUATING]
    replies = [r.decision async for r in case_stub.evaluate_policy_stream(requests)]
    assert [r.request_id for r in replies if r] == [c.id for c in EVALUATING]
    answers: dict[str, Any] = {}
    for case, reply in zip(EVALUATING, replies, strict=True):
        assert reply is not None
        try:
            _raise_for_error_decision(reply)
            answers[case.id] = as_builtins(reply)
        except Exception as exc:
            answers[case.id] = exc
    failures = await _compare(answers)
    assert not failures, "\n".join(failures)


def test_there_are_response_cases_to_run() -> None:
    assert len(RESPONDING) >= 15


async def test_response_cases_through_evaluate_response(case_stub: PolicyServiceStub) -> None:
    answers: dict[str, Any] = {}
    for case in RESPONDING:
        opts = case.options
        request = EvaluateResponseRequest(
            request_id=case.id,
            context_json=json.dumps(case.context).encode(),
            response_json=json.dumps(case.response).encode(),
            policies=list(opts.policies or ()),
            namespace=opts.namespace or "",
            trace=opts.trace,
        )
        try:
            reply = await case_stub.evaluate_response(request)
            assert reply.decision is not None
            assert reply.decision.request_id == case.id
            answers[case.id] = as_builtins(reply.decision)
        except GRPCError as exc:
            answers[case.id] = _unary_error(exc)
    failures = await _compare(answers, RESPONDING)
    assert not failures, "\n".join(failures)


async def _compare(
    answers: Mapping[str, Any], cases: Sequence[LanguageCase] = EVALUATING
) -> list[str]:
    def evaluate(case: LanguageCase) -> Mapping[str, Any]:
        answer = answers[case.id]
        if isinstance(answer, Exception):
            raise answer
        result: Mapping[str, Any] = answer
        return result

    failures = []
    for case in cases:
        evaluation_only = msgspec.structs.replace(
            case, expect_load_error=None, expect_warnings=None
        )
        for mismatch in run_case(evaluation_only, evaluate):
            failures.append(f"{case.id}: {mismatch}")
        answer = answers[case.id]
        if not isinstance(answer, Exception) and _comparable(answer) != _comparable(
            await _engine_decision(case)
        ):
            failures.append(f"{case.id}: differs from the engine's own decision")
    return failures


async def _engine_decision(case: LanguageCase) -> dict[str, Any]:
    """The library engine's decision for the case, in builtins form."""
    opts = case.options
    engine = PolicyEngine(
        load_policy_text(case.policies, file=case.id), default_decision=opts.default_decision
    )
    facts = CaseFacts(opts)
    if case.response is not None:
        judged = await engine.evaluate_response_async(
            case.context,
            case.response,
            usage=facts,
            integrations=facts,
            policies=list(opts.policies) if opts.policies is not None else None,
            namespace=opts.namespace,
            trace=opts.trace,
            now=opts.now,
        )
        return msgspec.to_builtins(judged)  # type: ignore[no-any-return]
    decision = await engine.evaluate_async(
        case.context,
        usage=facts,
        integrations=facts,
        policies=list(opts.policies) if opts.policies is not None else None,
        namespace=opts.namespace,
        trace=opts.trace,
        now=opts.now,
    )
    result: dict[str, Any] = msgspec.to_builtins(decision)
    return result


def _comparable(value: Any) -> Any:
    """JSON equality (1 == 1.0 but not True), timings left out: they differ every run."""
    if isinstance(value, Mapping):
        return {k: _comparable(v) for k, v in value.items() if k != "evaluation_time_ms"}
    if isinstance(value, list | tuple):
        return [_comparable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    return value


async def test_load_errors_and_warnings_through_validate_policy(
    case_stub: PolicyServiceStub,
) -> None:
    checked = [
        c
        for c in CASES
        if not c.xfail and (c.expect_load_error is not None or c.expect_warnings is not None)
    ]
    assert checked
    replies = {}
    for case in checked:
        replies[case.id] = await case_stub.validate_policy(
            ValidatePolicyRequest(document=case.policies)
        )

    def load_issues(case: LanguageCase) -> Sequence[Any]:
        return [i.to_dict() for i in replies[case.id].errors]

    def warnings(case: LanguageCase) -> Sequence[Any]:
        return [i.to_dict() for i in replies[case.id].warnings]

    failures = []
    for case in checked:
        validation_only = msgspec.structs.replace(case, expect=None, expect_error=None)
        mismatches = run_case(
            validation_only, _no_evaluation, load_issues=load_issues, warnings=warnings
        )
        failures += [f"{case.id}: {m}" for m in mismatches]
    assert not failures, "\n".join(failures)


def _no_evaluation(case: LanguageCase) -> Mapping[str, Any]:
    raise AssertionError("evaluations are checked by the other tests")


def test_error_classes_round_trip() -> None:
    with pytest.raises(core_errors.PolicyNotFound):
        raise _error_class("policy_not_found")("x")
    assert issubclass(_error_class("invalid_policy"), PolicyLoadError)


async def test_evaluate_response_refuses_a_missing_response(case_stub: PolicyServiceStub) -> None:
    request = EvaluateResponseRequest(request_id="x", context_json=b"{}")
    with pytest.raises(GRPCError) as raised:
        await case_stub.evaluate_response(request)
    assert raised.value.status is Status.INVALID_ARGUMENT
    assert "response_json" in str(raised.value.message)
