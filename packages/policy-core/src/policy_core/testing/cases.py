"""Language case files: the behaviour of the policy language as data.

A case file (``tests/cases/**/*.yaml``) holds a policy text and a list of
cases, each a context with the decision expected from it, an expected error,
expected load errors or expected validation warnings. The same files drive
the engine, the HTTP API and the gRPC API: each target supplies a callable
that evaluates a case, and `run_case` compares what it returns.

A case with a ``response`` judges that response to its context (spec 7.1,
``evaluate_response``) instead of the request.

Comparison rules (so that a case states only what it means to check):

- ``expect`` holds a subset of the decision's fields (``msgspec.to_builtins``
  form); each listed field is compared exactly, lists in order, ``true`` never
  equal to ``1``.
- ``shadow`` is compared as a subset, recursively: a shadow decision carries
  its own ``policy_set`` and timing, which no case can state.
- ``trace`` and ``errors`` must have the same length, each entry holding the
  listed keys (an error's message is the engine's text: a case may omit it).
- ``expect_load_error`` / ``expect_warnings``: each listed issue must be
  present (line and column exact, ``message`` a substring); an empty
  ``expect_warnings`` list means "no warning at all".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from policy_core.integrations import GivenFacts, fake_integrations
from policy_core.testsuite import CaseOptions, FactValue, FakeIntegration, compare_decision

__all__ = [
    "CaseFacts",
    "CaseFileError",
    "CaseOptions",
    "ExpectedIssue",
    "FactValue",
    "FakeIntegration",
    "LanguageCase",
    "check_issues",
    "compare_decision",
    "load_case_file",
    "load_case_files",
    "run_case",
]


class CaseFileError(Exception):
    """A case file that cannot be read; the message names the file and the reason."""


class ExpectedIssue(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One issue a load or a validation must report (line/column 1-based, in the policy text)."""

    line: int | None = None
    column: int | None = None
    message: str = ""


class _RawCase(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    description: str | None = None
    context: dict[str, Any] = {}
    response: dict[str, Any] | None = None
    policies: str | None = None
    options: CaseOptions = CaseOptions()
    expect: dict[str, Any] | None = None
    expect_error: str | None = None
    expect_load_error: tuple[ExpectedIssue, ...] | None = None
    expect_warnings: tuple[ExpectedIssue, ...] | None = None
    xfail: str | None = None


class _RawFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    description: str
    policies: str | None = None
    cases: tuple[_RawCase, ...]


class LanguageCase(msgspec.Struct, frozen=True, kw_only=True):
    """One case, with its policy text resolved (the file's, or the case's own)."""

    file: str  # the case file, relative to the root it was loaded from
    name: str
    policies: str
    context: dict[str, Any]
    options: CaseOptions
    # Spec 7.1: with a response, the case judges it (evaluate_response) instead of the request.
    response: dict[str, Any] | None = None
    expect: dict[str, Any] | None = None
    expect_error: str | None = None
    expect_load_error: tuple[ExpectedIssue, ...] | None = None
    expect_warnings: tuple[ExpectedIssue, ...] | None = None
    xfail: str | None = None
    description: str | None = None

    @property
    def id(self) -> str:
        """``<file>::<name>``: the pytest id, and the ``file=`` given to the loader."""
        return f"{self.file}::{self.name}"

    @property
    def evaluates(self) -> bool:
        """True when the case evaluates a context (rather than only loading)."""
        return self.expect is not None or self.expect_error is not None


_yaml = YAML(typ="safe", pure=True)  # pure: YAML 1.2 core schema, like policy documents


def load_case_file(path: Path, root: Path | None = None) -> list[LanguageCase]:
    """Read one case file; raise CaseFileError naming the file when it is malformed."""
    rel = path.relative_to(root).as_posix() if root else path.as_posix()
    try:
        data = _yaml.load(path.read_text(encoding="utf-8"))
        raw = msgspec.convert(data, _RawFile)
    except (OSError, YAMLError, msgspec.ValidationError) as exc:
        raise CaseFileError(f"{rel}: {exc}") from exc
    cases: list[LanguageCase] = []
    seen: set[str] = set()
    for rc in raw.cases:
        if rc.name in seen:
            raise CaseFileError(f"{rel}: case name {rc.name!r} is used twice")
        seen.add(rc.name)
        cases.append(_resolve(rel, raw, rc))
    return cases


def _resolve(rel: str, raw: _RawFile, rc: _RawCase) -> LanguageCase:
    text = rc.policies if rc.policies is not None else raw.policies
    where = f"{rel}::{rc.name}"
    if text is None:
        raise CaseFileError(f"{where}: no policies (neither the file nor the case has any)")
    kinds = [rc.expect is not None, rc.expect_error is not None, rc.expect_load_error is not None]
    if sum(kinds) > 1:
        raise CaseFileError(f"{where}: use only one of expect, expect_error, expect_load_error")
    if sum(kinds) == 0 and rc.expect_warnings is None:
        raise CaseFileError(f"{where}: the case expects nothing; add expect or expect_warnings")
    return LanguageCase(
        file=rel,
        name=rc.name,
        policies=text,
        context=rc.context,
        response=rc.response,
        options=rc.options,
        expect=rc.expect,
        expect_error=rc.expect_error,
        expect_load_error=rc.expect_load_error,
        expect_warnings=rc.expect_warnings,
        xfail=rc.xfail,
        description=rc.description or raw.description,
    )


def load_case_files(root: str | Path) -> list[LanguageCase]:
    """Every case of every ``*.yaml`` file under ``root``, in path order."""
    base = Path(root)
    files = sorted(p for p in base.rglob("*.yaml") if p.is_file())
    if not files:
        raise CaseFileError(f"{base}: no case files (*.yaml) found")
    return [case for path in files for case in load_case_file(path, base)]


# --- comparison (decisions: see policy_core.testsuite) ----------------------


def _issue_fields(issue: Any) -> tuple[int | None, int | None, str]:
    if isinstance(issue, Mapping):
        return issue.get("line"), issue.get("column"), str(issue.get("message", ""))
    return getattr(issue, "line", None), getattr(issue, "column", None), str(issue.message)


def check_issues(
    expected: Sequence[ExpectedIssue], actual: Iterable[Any], *, what: str = "issue"
) -> list[str]:
    """Each expected issue must be present; an empty expectation means none at all."""
    got = [_issue_fields(i) for i in actual]
    shown = "; ".join(f"{ln}:{col}: {msg}" for ln, col, msg in got) or "none"
    if not expected:
        return [] if not got else [f"expected no {what}, got: {shown}"]

    def present(want: ExpectedIssue) -> bool:
        return any(
            (want.line is None or want.line == ln)
            and (want.column is None or want.column == col)
            and want.message in msg
            for ln, col, msg in got
        )

    return [
        f"missing {what} {w.line}:{w.column}: {w.message!r} (got: {shown})"
        for w in expected
        if not present(w)
    ]


Evaluate = Callable[[LanguageCase], Mapping[str, Any]]
Issues = Callable[[LanguageCase], Sequence[Any]]


def run_case(
    case: LanguageCase,
    evaluate: Evaluate,
    *,
    load_issues: Issues | None = None,
    warnings: Issues | None = None,
) -> list[str]:
    """Run one case against a target and return its mismatches (empty: the case passes).

    ``evaluate`` returns the decision in builtins form (or raises the engine's
    error); ``load_issues`` returns the load errors of the case's policy text
    (empty when it loads); ``warnings`` returns its validation warnings. A
    target without ``warnings`` checks only the evaluation of a case that
    also expects warnings.
    """
    out: list[str] = []
    if case.expect_load_error is not None:
        if load_issues is None:
            return ["this target cannot check load errors"]
        issues = load_issues(case)
        if not issues:
            return ["expected a load error, but the policies loaded"]
        out += check_issues(case.expect_load_error, issues, what="load error")
    if case.expect_warnings is not None:
        if warnings is not None:
            out += check_issues(case.expect_warnings, warnings(case), what="warning")
        elif not case.evaluates:
            # A target without validation still checks the evaluation part of
            # a case; a warnings-only case is one it cannot run at all.
            return ["this target cannot check warnings"]
    if case.evaluates:
        out += _run_evaluation(case, evaluate)
    return out


def _run_evaluation(case: LanguageCase, evaluate: Evaluate) -> list[str]:
    try:
        decision = evaluate(case)
    except Exception as exc:  # the case may expect exactly this error class
        names = [cls.__name__ for cls in type(exc).__mro__]
        if case.expect_error is not None and case.expect_error in names:
            return []
        return [f"evaluate raised {type(exc).__name__}: {exc}"]
    if case.expect_error is not None:
        return [f"expected {case.expect_error}, but evaluate returned {dict(decision)!r}"]
    assert case.expect is not None
    return compare_decision(case.expect, decision)


# --- facts of a case ---------------------------------------------------------------


class CaseFacts(GivenFacts):
    """The usage store and the integration source of one case, for every target.

    A fact listed in the case's ``facts`` answers as given; the other
    integration facts come from the memory fakes of ``options.integrations``
    (an integration not listed is not configured); counters not given are
    missing, as from a store that does not know them.
    """

    def __init__(self, options: CaseOptions, *, timeout: float = 0.05) -> None:
        super().__init__(
            options.fact_map(), fake_integrations(options.integrations, timeout=timeout)
        )
