"""Policy test suites: the engine behind ``llm-policy test`` (interfaces.md).

A suite file (``*.test.yaml``) names the policies it exercises, relative to
itself, and lists cases, each a context and the subset of the decision it
expects::

    policies: ../policies/security.yaml      # a file, a directory, or a list of them
    cases:
      - name: SQL injection is denied
        context: {llm: {prompt: "SELECT * FROM users"}, user: {id: u1}}
        options: {namespace: production}     # optional: policies, namespace, now, facts,
                                             # trace, default_decision (as in language cases)
        expect: {decision: deny, matched_rules: [security/block-sql-injection]}

Each listed decision field is compared exactly, lists in order (``shadow`` as
a subset, and ``errors``/``trace`` entries by the keys they list, as in the
language case files). A failing case carries a unified diff of the expected
fields against the same fields of the actual decision.
"""

from __future__ import annotations

import asyncio
import difflib
import io
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from policy_core.errors import PolicyEngineError
from policy_core.integrations import GivenFacts, fake_integrations
from policy_core.model import Decision

__all__ = [
    "CaseOptions",
    "CaseResult",
    "FactValue",
    "FakeIntegration",
    "Suite",
    "SuiteCase",
    "SuiteError",
    "compare_decision",
    "find_suites",
    "load_suite",
    "run_suite",
    "run_suites",
    "to_junit_xml",
]

SUITE_SUFFIXES = (".test.yaml", ".test.yml", ".test.json")
DiffFormat = Literal["yaml", "json"]


class SuiteError(PolicyEngineError):
    """A suite file that cannot be used; the message names the file and the reason."""

    code = "invalid_suite"

    def __init__(self, file: str | Path, reason: str) -> None:
        self.file, self.reason = str(file), reason
        super().__init__(f"{file}: {reason}")


# --- options and comparison (shared with the language case files) -----------


class FactValue(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A stateful/integration fact handed to the engine: ``fact`` is the FactRequest tuple."""

    fact: tuple[Any, ...]
    value: Any


class FakeIntegration(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A memory fake of one integration (policy_core.memory): what it answers, which fault.

    Shield flags a prompt containing one of `threats`; CostOps has `limit` USD of
    which `spent` is gone; Governance approves `models`. `fault` is one of
    error, hang, refused, malformed, wrong_type (policy_core.memory.FAULTS).
    """

    threats: tuple[str, ...] = ()
    limit: float = 100.0
    spent: float = 0.0
    models: tuple[str, ...] = ()
    fault: Literal["error", "hang", "refused", "malformed", "wrong_type"] | None = None


class CaseOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Options passed to ``evaluate`` (``default_decision`` configures the engine).

    ``integrations`` maps shield / costops / governance to the memory fake that
    answers the case's integration facts (those not given in ``facts``); an
    integration not listed is not configured.
    """

    policies: tuple[str, ...] | None = None
    namespace: str | None = None
    trace: bool = False
    now: float | None = None
    default_decision: Literal["allow", "deny"] = "allow"
    facts: tuple[FactValue, ...] = ()
    integrations: dict[Literal["shield", "costops", "governance"], FakeIntegration] | None = None

    def fact_map(self) -> dict[tuple[Any, ...], Any] | None:
        """The facts as the engine takes them (FactRequest tuple -> value), None when none."""
        if not self.facts:
            return None
        return {_freeze(f.fact): f.value for f in self.facts}


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _same(expected: Any, actual: Any) -> bool:
    """JSON equality: deep, lists in order, bools distinct from numbers, 1 == 1.0."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, Mapping):
        return (
            isinstance(actual, Mapping)
            and set(expected) == set(actual)
            and all(_same(expected[k], actual[k]) for k in expected)
        )
    if isinstance(expected, list | tuple):
        return (
            isinstance(actual, list | tuple)
            and len(expected) == len(actual)
            and all(_same(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


def _subset(expected: Mapping[str, Any], actual: Any) -> bool:
    if not isinstance(actual, Mapping):
        return False
    return all(k in actual and _same(v, actual[k]) for k, v in expected.items())


# Lists whose entries hold engine-chosen texts (error messages, printed
# sub-expressions): an expected entry lists only the keys it can state.
_ELEMENT_SUBSET = frozenset({"trace", "errors"})


def _field_matches(key: str, expected: Any, actual: Any) -> bool:
    if key == "shadow" and isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return False
        return all(k in actual and _field_matches(k, v, actual[k]) for k, v in expected.items())
    if key in _ELEMENT_SUBSET and isinstance(expected, list | tuple):
        return (
            isinstance(actual, list | tuple)
            and len(expected) == len(actual)
            and all(_subset(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return _same(expected, actual)


def _show(value: Any) -> str:
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        return repr(value)


def compare_decision(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """Mismatches between an ``expect`` block and a decision (builtins form)."""
    out: list[str] = []
    for key, want in expected.items():
        if key not in actual:
            out.append(f"{key}: the decision has no such field")
        elif not _field_matches(key, want, actual[key]):
            out.append(f"{key}: expected {_show(want)}, got {_show(actual[key])}")
    return out


# --- suites -----------------------------------------------------------------


class SuiteCase(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One case of a suite: a context and the decision fields it expects."""

    name: str
    description: str | None = None
    context: dict[str, Any] = {}
    # Spec 7.1: with a response, the case judges it (evaluate_response) instead of the request.
    response: dict[str, Any] | None = None
    options: CaseOptions = CaseOptions()
    expect: dict[str, Any]


class _RawSuite(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    description: str | None = None
    policies: str | list[str]
    cases: list[SuiteCase]


class Suite(msgspec.Struct, frozen=True, kw_only=True):
    """A loaded suite: its file, the resolved policy paths and its cases."""

    file: str
    policies: tuple[str, ...]
    cases: tuple[SuiteCase, ...]
    description: str | None = None


class CaseResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one case; ``diff`` and ``mismatches`` are empty when it passed."""

    suite: str
    name: str
    passed: bool
    mismatches: tuple[str, ...] = ()
    diff: str = ""
    error: str | None = None  # evaluate raised (e.g. PolicyNotFound for a bad filter)
    duration_ms: float = 0.0


_yaml = YAML(typ="safe", pure=True)


def _decision_fields() -> frozenset[str]:
    return frozenset(Decision.__struct_fields__)


def load_suite(path: str | Path) -> Suite:
    """Read and check one suite file; raise SuiteError naming the file and the reason."""
    file = Path(path)
    try:
        data = _yaml.load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SuiteError(file, f"cannot read: {exc.strerror or exc}") from exc
    except YAMLError as exc:
        raise SuiteError(file, f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SuiteError(file, "a suite is a mapping with `policies` and `cases`")
    try:
        raw = msgspec.convert(data, _RawSuite)
    except msgspec.ValidationError as exc:
        raise SuiteError(file, str(exc)) from exc
    _check_cases(file, raw.cases)
    entries = [raw.policies] if isinstance(raw.policies, str) else raw.policies
    if not entries:
        raise SuiteError(file, "`policies` names no file or directory")
    resolved = []
    for entry in entries:
        target = (file.parent / entry).resolve()
        if not target.exists():
            raise SuiteError(file, f"policies path {entry!r} does not exist (looked at {target})")
        resolved.append(str(target))
    return Suite(
        file=str(file),
        policies=tuple(resolved),
        cases=tuple(raw.cases),
        description=raw.description,
    )


def _check_cases(file: Path, cases: Sequence[SuiteCase]) -> None:
    if not cases:
        raise SuiteError(file, "the suite has no cases")
    fields = _decision_fields()
    seen: set[str] = set()
    for i, case in enumerate(cases):
        where = f"cases[{i}] ({case.name!r})"
        if case.name in seen:
            raise SuiteError(file, f"{where}: the name is used by an earlier case")
        seen.add(case.name)
        if not case.expect:
            raise SuiteError(file, f"{where}: `expect` is empty, so the case checks nothing")
        unknown = sorted(set(case.expect) - fields)
        if unknown:
            raise SuiteError(
                file,
                f"{where}: `expect` has unknown decision fields {unknown}; "
                f"known: {', '.join(sorted(fields))}",
            )


def find_suites(paths: Iterable[str | Path]) -> list[Path]:
    """Suite files among `paths`: files as given, directories searched for ``*.test.yaml``."""
    found: list[Path] = []
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            found.extend(
                sorted(
                    p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUITE_SUFFIXES)
                )
            )
        elif path.exists():
            found.append(path)
        else:
            raise SuiteError(path, "no such file or directory")
    return found


def run_suite(suite: Suite, *, diff_format: DiffFormat = "yaml") -> list[CaseResult]:
    """Run every case of a suite against a fresh engine over its policies.

    Raises PolicyLoadError when the policies do not load (the CLI reports it
    as an invalid policy, not as a failed test).
    """
    # deferred: the CLI imports this module at start; the engine and loader load when a suite runs
    from policy_core.engine import PolicyEngine
    from policy_core.language import load_policies

    policies = load_policies(list(suite.policies))
    engines: dict[str, Any] = {}
    results = []
    for case in suite.cases:
        default = case.options.default_decision
        if default not in engines:
            engines[default] = PolicyEngine(policies, default_decision=default)
        results.append(_run_case(suite.file, case, engines[default], diff_format))
    return results


def run_suites(
    paths: Iterable[str | Path], *, diff_format: DiffFormat = "yaml"
) -> list[CaseResult]:
    """Find, load and run every suite under `paths`, in path order."""
    results: list[CaseResult] = []
    for file in find_suites(paths):
        results.extend(run_suite(load_suite(file), diff_format=diff_format))
    return results


def _run_case(file: str, case: SuiteCase, engine: Any, diff_format: DiffFormat) -> CaseResult:
    opts = case.options
    start = time.perf_counter()
    try:
        if case.response is not None:
            decision = engine.evaluate_response(
                case.context,
                case.response,
                policies=list(opts.policies) if opts.policies is not None else None,
                namespace=opts.namespace,
                trace=opts.trace,
                now=opts.now,
                facts=opts.fact_map(),
            )
        elif opts.integrations is not None:
            # Integration facts from memory fakes (policy_core.integrations), given facts first.
            facts = GivenFacts(opts.fact_map(), fake_integrations(opts.integrations))
            decision = asyncio.run(
                engine.evaluate_async(
                    case.context,
                    usage=facts,
                    integrations=facts,
                    policies=list(opts.policies) if opts.policies is not None else None,
                    namespace=opts.namespace,
                    trace=opts.trace,
                    now=opts.now,
                )
            )
        else:
            decision = engine.evaluate(
                case.context,
                policies=list(opts.policies) if opts.policies is not None else None,
                namespace=opts.namespace,
                trace=opts.trace,
                now=opts.now,
                facts=opts.fact_map(),
            )
    except PolicyEngineError as exc:
        return CaseResult(
            suite=file,
            name=case.name,
            passed=False,
            error=f"{type(exc).__name__}: {exc}",
            duration_ms=(time.perf_counter() - start) * 1000,
        )
    elapsed = (time.perf_counter() - start) * 1000
    actual: dict[str, Any] = msgspec.to_builtins(decision)
    mismatches = compare_decision(case.expect, actual)
    return CaseResult(
        suite=file,
        name=case.name,
        passed=not mismatches,
        mismatches=tuple(mismatches),
        diff=render_diff(case.expect, actual, fmt=diff_format) if mismatches else "",
        duration_ms=elapsed,
    )


# --- diffs ------------------------------------------------------------------


def _project(expected: Any, actual: Any) -> Any:
    """The part of `actual` that `expected` talks about, so the diff shows only that."""
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        return {k: _project(v, actual.get(k)) for k, v in expected.items()}
    if isinstance(expected, list) and isinstance(actual, list | tuple):
        return [_project(expected[i], a) if i < len(expected) else a for i, a in enumerate(actual)]
    return actual


def _dump(value: Any, fmt: DiffFormat) -> str:
    if fmt == "json":
        return msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n"
    out = io.StringIO()
    dumper = YAML(typ="safe", pure=True)
    dumper.default_flow_style = False
    dumper.representer.sort_base_mapping_type_on_output = False  # keep the author's order
    dumper.dump(value, out)
    return out.getvalue()


def render_diff(expected: Mapping[str, Any], actual: Mapping[str, Any], *, fmt: DiffFormat) -> str:
    """A unified diff of the expected fields against the same fields of the decision."""
    view = _project(dict(expected), dict(actual))
    lines = difflib.unified_diff(
        _dump(dict(expected), fmt).splitlines(keepends=True),
        _dump(view, fmt).splitlines(keepends=True),
        fromfile="expected",
        tofile="actual",
    )
    return "".join(lines)


# --- JUnit ------------------------------------------------------------------


def to_junit_xml(results: Sequence[CaseResult]) -> str:
    """JUnit XML for CI: one <testsuite> per suite file, one <testcase> per case."""
    root = ET.Element("testsuites", name="llm-policy test")
    by_suite: dict[str, list[CaseResult]] = {}
    for result in results:
        by_suite.setdefault(result.suite, []).append(result)
    for name, cases in by_suite.items():
        suite_el = ET.SubElement(root, "testsuite", name=name)
        for result in cases:
            _junit_case(suite_el, name, result)
        _junit_counts(suite_el, cases)
    _junit_counts(root, results)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


# Characters XML 1.0 cannot carry at all (ElementTree would write them as-is,
# and CI parsers reject the whole report): control characters but tab/LF/CR.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _junit_case(parent: ET.Element, suite: str, result: CaseResult) -> None:
    case_el = ET.SubElement(
        parent,
        "testcase",
        classname=_xml(Path(suite).name),
        name=_xml(result.name),
        time=f"{result.duration_ms / 1000:.6f}",
    )
    if result.error is not None:
        err = ET.SubElement(case_el, "error", message=_xml(result.error))
        err.text = _xml(result.error)
    elif not result.passed:
        fail = ET.SubElement(case_el, "failure", message=_xml("; ".join(result.mismatches)))
        fail.text = _xml(result.diff)


def _junit_counts(element: ET.Element, results: Sequence[CaseResult]) -> None:
    errors = sum(r.error is not None for r in results)
    failures = sum(not r.passed and r.error is None for r in results)
    element.set("tests", str(len(results)))
    element.set("failures", str(failures))
    element.set("errors", str(errors))
    element.set("time", f"{sum(r.duration_ms for r in results) / 1000:.6f}")
