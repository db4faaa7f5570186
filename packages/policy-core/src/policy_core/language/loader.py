"""Loading policies from files, directories or text; every problem in one PolicyLoadError (spec 6)."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from pathlib import Path as FsPath

import msgspec

from policy_core.errors import Issue, PolicyLoadError
from policy_core.language.context_schema import ContextSchema, schema_warnings
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


def _parse_text(
    text: str, file: str, issues: list[Issue], first_seen: dict[str, tuple[str, int]]
) -> list[Policy]:
    src = SourceText(text, file)
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
            where = f"line {previous[1]}" if previous[0] == file else f"{previous[0]}:{previous[1]}"
            issues.append(
                src.issue(
                    line,
                    col,
                    f"duplicate policy id {policy.id!r} (first defined at {where})",
                    "metadata.id",
                )
            )
            continue
        first_seen[policy.id] = (file, line + 1)
        policies.append(policy)
    return policies


def validate_policy_text(
    text: str,
    *,
    file: str = "<text>",
    context_schema: ContextSchema | None = None,
    integrations: Collection[str] | None = None,
) -> ValidationReport:
    """Load and also report warnings; raises PolicyLoadError when anything is invalid.

    With a `context_schema`, paths the policies read that it does not define
    are warnings too (spec 6). With `integrations` (the names the running
    configuration provides), so is every integration fact a policy uses whose
    integration is not among them (spec 4.5).
    """
    policies = load_policy_text(text, file=file)
    src = SourceText(text, file)
    documents = [unwrap(d)[0] for d in parse_documents(src)[0]]
    warnings = [
        w for p, doc in zip(policies, documents, strict=True) for w in policy_warnings(p, src, doc)
    ]
    if context_schema is not None:
        for policy, doc in zip(policies, documents, strict=True):
            warnings += schema_warnings(policy, context_schema, src, doc)
    if integrations is not None:
        for policy, doc in zip(policies, documents, strict=True):
            warnings += integration_warnings(policy, integrations, src, doc)
    return ValidationReport(
        policies=tuple(policies), warnings=tuple(sorted(warnings, key=Issue.sort_key))
    )


def load_policy_text(text: str, *, file: str = "<text>") -> list[Policy]:
    """Every policy document in a YAML or JSON text (several documents allowed)."""
    issues: list[Issue] = []
    policies = _parse_text(text, file, issues, {})
    if issues:
        raise PolicyLoadError(issues)
    return policies


def _files(path: FsPath) -> list[FsPath]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _EXTENSIONS)
    return [path]


def load_policies(
    source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
) -> list[Policy]:
    """Policies from a file, a directory (recursively: *.yaml, *.yml, *.json), several paths, or text."""
    if isinstance(source, str) and ("\n" in source or source.lstrip()[:1] in ("{", "[")):
        return load_policy_text(source)
    paths = [source] if isinstance(source, str | os.PathLike) else list(source)
    issues: list[Issue] = []
    policies: list[Policy] = []
    seen: dict[str, tuple[str, int]] = {}
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
            policies.extend(_parse_text(text, str(file), issues, seen))
    if issues:
        raise PolicyLoadError(issues)
    return policies
