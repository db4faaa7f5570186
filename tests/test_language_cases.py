"""Run every language case file (tests/cases/**/*.yaml) against the library engine.

The same files drive the HTTP and gRPC suites; here the target is the
in-process PolicyEngine. Policy texts are loaded with ``file=<case id>`` so
that issue positions are relative to the case's policy text block.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
from policy_core.testing.cases import CaseFacts, LanguageCase, load_case_files, run_case

CASES_DIR = Path(__file__).parent / "cases"
CASES = load_case_files(CASES_DIR)


def _evaluate(case: LanguageCase) -> Mapping[str, Any]:
    # Imported here so that collection works (and each case reports) while the
    # engine is still landing.
    from policy_core import PolicyEngine, load_policy_text

    policies = load_policy_text(case.policies, file=case.id)
    engine = PolicyEngine(policies, default_decision=case.options.default_decision)
    opts = case.options
    before = copy.deepcopy(case.context)

    def once(trace: bool = opts.trace) -> dict[str, Any]:
        if case.response is not None:
            judged = engine.evaluate_response(
                case.context,
                case.response,
                policies=list(opts.policies) if opts.policies is not None else None,
                namespace=opts.namespace,
                trace=trace,
                now=opts.now,
                facts=opts.fact_map(),
            )
            return msgspec.to_builtins(judged)  # type: ignore[no-any-return]
        if opts.integrations is not None:
            # Integration facts from the memory fakes: gathered, then evaluated.
            facts = CaseFacts(opts)
            decision = asyncio.run(
                engine.evaluate_async(
                    case.context,
                    usage=facts,
                    integrations=facts,
                    policies=list(opts.policies) if opts.policies is not None else None,
                    namespace=opts.namespace,
                    trace=trace,
                    now=opts.now,
                )
            )
            return msgspec.to_builtins(decision)  # type: ignore[no-any-return]
        decision = engine.evaluate(
            case.context,
            policies=list(opts.policies) if opts.policies is not None else None,
            namespace=opts.namespace,
            trace=trace,
            now=opts.now,
            facts=opts.fact_map(),
        )
        out: dict[str, Any] = msgspec.to_builtins(decision)
        return out

    result = once()
    if case.response is not None:
        _check_stream(engine, case, result)
    # Spec 5.3: the engine never mutates the caller's context (derived facts
    # included); and one engine gives the same decision twice (no state
    # leaks between evaluations, e.g. through lazily computed facts).
    if case.context != before:
        raise AssertionError(f"evaluate mutated the context: {before!r} -> {case.context!r}")
    again = once()
    if _untimed(again) != _untimed(result):
        raise AssertionError(f"a second evaluation differs: {result!r} then {again!r}")
    # Spec 5.2.5: trace never changes any other field (the engine has a traced
    # and an untraced path; every case runs both).
    flipped = _untimed(once(not opts.trace))
    if {k: v for k, v in flipped.items() if k != "trace"} != {
        k: v for k, v in _untimed(result).items() if k != "trace"
    }:
        raise AssertionError(f"trace={not opts.trace} changes the decision: {flipped!r}")
    return result


_STREAMED = frozenset({"text", "usage", "finish_reason", "tool_calls", "model"})


def _check_stream(engine: Any, case: LanguageCase, result: dict[str, Any]) -> None:
    """Spec 7.2: the stream judge fed the text in 4-character deltas decides the same."""
    opts = case.options
    response = case.response or {}
    text = response.get("text")
    if not isinstance(text, str) or set(response) - _STREAMED:
        return  # a stream carries only these fields
    judge = engine.response_stream(
        case.context,
        policies=list(opts.policies) if opts.policies is not None else None,
        namespace=opts.namespace,
        now=opts.now,
        facts=opts.fact_map(),
    )
    released = "".join(judge.feed(text[i : i + 4]).text for i in range(0, len(text), 4))
    rest = {k: v for k, v in response.items() if k in ("usage", "finish_reason", "tool_calls")}
    final = judge.close(**rest, model=response.get("model"))
    streamed = _untimed(msgspec.to_builtins(final.decision))
    if streamed != _untimed(result):
        raise AssertionError(f"the stream judge decides {streamed!r}, not {result!r}")
    if result["decision"] != "deny":
        passed = result["modifications"].get("response.text", text)
        if released + final.text != passed:
            raise AssertionError(f"the stream released {released + final.text!r}, not {passed!r}")


def _untimed(decision: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in decision.items() if k != "evaluation_time_ms"}
    if isinstance(out.get("shadow"), dict):
        out["shadow"] = _untimed(out["shadow"])
    return out


def _load_issues(case: LanguageCase) -> Sequence[Any]:
    from policy_core import PolicyLoadError, load_policy_text

    try:
        load_policy_text(case.policies, file=case.id)
    except PolicyLoadError as exc:
        _check_load_error(case, exc)
        return exc.issues
    return []


def _check_load_error(case: LanguageCase, exc: Any) -> None:
    # Spec 6: issues name the file given, come sorted by position, and str()
    # prints one `file:line:column: message` line per issue.
    issues = exc.issues
    if any(i.file != case.id for i in issues):
        raise AssertionError(f"issues name another file: {issues!r}")
    positions = [(i.line, i.column) for i in issues]
    if positions != sorted(positions):
        raise AssertionError(f"issues are not sorted by position: {positions}")
    printed = "\n".join(f"{case.id}:{i.line}:{i.column}: {i.message}" for i in issues)
    if str(exc) != printed:
        raise AssertionError(f"str() of the error is {str(exc)!r}, not {printed!r}")


def _warnings(case: LanguageCase) -> Sequence[Any]:
    from policy_core import validate_policy_text

    report = validate_policy_text(case.policies, file=case.id)
    return list(report.warnings)


def _param(case: LanguageCase) -> Any:
    marks = [pytest.mark.xfail(reason=case.xfail, strict=True)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 100


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_language_case(case: LanguageCase) -> None:
    mismatches = run_case(case, _evaluate, load_issues=_load_issues, warnings=_warnings)
    assert not mismatches, f"{case.id}:\n  " + "\n  ".join(mismatches)


def _nested_list(depth: int) -> list[Any]:
    root: list[Any] = []
    current = root
    for _ in range(depth):
        inner: list[Any] = []
        current.append(inner)
        current = inner
    return root


def test_a_deeply_nested_context_never_crashes_evaluation() -> None:
    # Spec 5.4: a decision is always produced. A context too deep to compare
    # is an evaluation error (fail closed), not an exception for the caller;
    # this cannot be a case file, whose YAML loader has its own depth limit.
    from policy_core import PolicyEngine, load_policy_text

    text = "metadata: {id: p}\nrules: [{id: r, condition: 'user.x == user.y', action: {decision: allow}}]"
    engine = PolicyEngine(load_policy_text(text, file="deep"))
    deep = _nested_list(2000)
    decision = engine.evaluate({"user": {"x": deep, "y": deep}})
    assert decision.decision == "deny"
    assert [(e.policy, e.rule) for e in decision.errors] == [("p", "r")]
