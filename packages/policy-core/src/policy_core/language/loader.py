"""Loading policies from files, directories or text; every problem in one PolicyLoadError (spec 6)."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from pathlib import Path as FsPath
from typing import Any

import msgspec

from policy_core.errors import Issue, PolicyLoadError
from policy_core.language.context_schema import ContextSchema, schema_warnings
from policy_core.language.fast_source import plain_documents
from policy_core.language.schema import build_policy
from policy_core.language.source import SourceText, parse_documents, policy_id_position, unwrap
from policy_core.language.warnings import integration_warnings, policy_warnings
from policy_core.model import Policy

__all__ = ["ValidationReport", "load_policies", "load_policy_text", "validate_policy_text"]

_EXTENSIONS = (".yaml", ".yml", ".json")


class ValidationReport(msgspec.Struct, frozen=True, kw_only=True):
    """A successful validation: the policies and the warnings (never-matching rules, ...)."""

    policies: tuple[Policy, ...]
    warnings: tuple[Issue, ...] = ()


class _Seen:
    """Where a policy id was first defined, for a later duplicate's message.

    A policy loaded by the fast path has no positions: its line is found (by
    the position-keeping parse of its text) only if a duplicate needs it.
    """

    __slots__ = ("_index", "_line", "_src", "file")

    def __init__(
        self, file: str, line: int | None, src: SourceText | None = None, index: int = 0
    ) -> None:
        self.file, self._line, self._src, self._index = file, line, src, index

    @property
    def line(self) -> int:
        if self._line is None:
            assert self._src is not None
            doc, _ = unwrap(parse_documents(self._src)[0][self._index])
            self._line = policy_id_position(doc)[0] + 1
        return self._line


def _parse_fast(src: SourceText, first_seen: dict[str, _Seen]) -> list[Policy] | None:
    """The policies of a text with nothing to report, from the fast parse; None otherwise.

    None sends the text to `_parse_slow`, which finds and positions every problem.
    """
    documents = plain_documents(src.text)
    if not documents:
        return None  # declined, or no document (the slow path says so)
    issues: list[Issue] = []
    policies: list[Policy] = []
    for doc in documents:
        policy = build_policy(src, doc, issues)
        if policy is None or policy.id in first_seen:
            return None
        policies.append(policy)
    if len({p.id for p in policies}) != len(policies):
        return None
    for index, policy in enumerate(policies):
        first_seen[policy.id] = _Seen(src.file, None, src, index)
    return policies


def _parse_text(
    text: str, file: str, issues: list[Issue], first_seen: dict[str, _Seen], *, fast: bool = True
) -> list[Policy]:
    src = SourceText(text, file)
    if fast:
        policies = _parse_fast(src, first_seen)
        if policies is not None:
            return policies
    return _parse_slow(src, issues, first_seen)


def _parse_slow(src: SourceText, issues: list[Issue], first_seen: dict[str, _Seen]) -> list[Policy]:
    file = src.file
    documents, problems = parse_documents(src)
    issues.extend(problems)
    if not documents and not problems:
        issues.append(src.issue(0, 0, "no policy document found"))
    policies: list[Policy] = []
    for entry in documents:
        doc, at = unwrap(entry)
        policy = build_policy(src, doc, issues, at)
        if policy is None:
            continue
        line, col = policy_id_position(doc)
        previous = first_seen.get(policy.id)
        if previous is not None:
            where = (
                f"line {previous.line}"
                if previous.file == file
                else f"{previous.file}:{previous.line}"
            )
            issues.append(
                src.issue(
                    line,
                    col,
                    f"duplicate policy id {policy.id!r} (first defined at {where})",
                    "metadata.id",
                )
            )
            continue
        first_seen[policy.id] = _Seen(file, line + 1)
        policies.append(policy)
    return policies


def validate_policy_text(
    text: str,
    *,
    file: str = "<text>",
    context_schema: ContextSchema | None = None,
    integrations: Collection[str] | None = None,
    fast: bool = True,
) -> ValidationReport:
    """Load and also report warnings; raises PolicyLoadError when anything is invalid.

    With a `context_schema`, paths the policies read that it does not define
    are warnings too (spec 6). With `integrations` (the names the running
    configuration provides), so is every integration fact a policy uses whose
    integration is not among them (spec 4.5).
    """
    policies = load_policy_text(text, file=file, fast=fast)
    src = SourceText(text, file)
    documents = plain_documents(text) if fast else None
    if documents is not None:
        # Warnings from plain documents have no positions: keep them only if there are none.
        warnings = _warnings(policies, src, documents, context_schema, integrations)
        if not warnings:
            return ValidationReport(policies=tuple(policies))
    documents = [unwrap(d)[0] for d in parse_documents(src)[0]]
    warnings = _warnings(policies, src, documents, context_schema, integrations)
    return ValidationReport(
        policies=tuple(policies), warnings=tuple(sorted(warnings, key=Issue.sort_key))
    )


def _warnings(
    policies: list[Policy],
    src: SourceText,
    documents: list[Any],
    context_schema: ContextSchema | None,
    integrations: Collection[str] | None,
) -> list[Issue]:
    warnings = [
        w for p, doc in zip(policies, documents, strict=True) for w in policy_warnings(p, src, doc)
    ]
    if context_schema is not None:
        for policy, doc in zip(policies, documents, strict=True):
            warnings += schema_warnings(policy, context_schema, src, doc)
    if integrations is not None:
        for policy, doc in zip(policies, documents, strict=True):
            warnings += integration_warnings(policy, integrations, src, doc)
    return warnings


def load_policy_text(text: str, *, file: str = "<text>", fast: bool = True) -> list[Policy]:
    """Every policy document in a YAML or JSON text (several documents allowed).

    `fast=False` skips the fast first parse (fast_source.py) and reads the text
    with the position-keeping loader only; the result is the same (the tests pin it).
    """
    issues: list[Issue] = []
    policies = _parse_text(text, file, issues, {}, fast=fast)
    if issues:
        raise PolicyLoadError(issues)
    return policies


def _files(path: FsPath) -> list[FsPath]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _EXTENSIONS)
    return [path]


def load_policies(
    source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *, fast: bool = True
) -> list[Policy]:
    """Policies from a file, a directory (recursively: *.yaml, *.yml, *.json), several paths, or text."""
    if isinstance(source, str) and ("\n" in source or source.lstrip()[:1] in ("{", "[")):
        return load_policy_text(source, fast=fast)
    paths = [source] if isinstance(source, str | os.PathLike) else list(source)
    issues: list[Issue] = []
    policies: list[Policy] = []
    seen: dict[str, _Seen] = {}
    for entry in paths:
        path = FsPath(entry)
        if not path.exists():
            issues.append(
                Issue(file=str(path), line=1, column=1, message="no such file or directory")
            )
            continue
        for file in _files(path):
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                issues.append(
                    Issue(file=str(file), line=1, column=1, message=f"cannot read: {exc}")
                )
                continue
            policies.extend(_parse_text(text, str(file), issues, seen, fast=fast))
    if issues:
        raise PolicyLoadError(issues)
    return policies
