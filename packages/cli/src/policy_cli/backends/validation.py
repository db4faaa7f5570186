"""Validation of policy text in process (no store needed: the core does it all)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from policy_core.errors import PolicyLoadError
from policy_core.language import ContextSchema, validate_policy_text

from policy_cli.backends.base import Json, ValidationOutcome

__all__ = ["issue_json", "validate_text"]


def issue_json(issue: Any) -> Json:
    """An Issue as `{file, line, column, message, path}` (the API's error entries)."""
    return {
        "file": issue.file,
        "line": issue.line,
        "column": issue.column,
        "message": issue.message,
        "path": getattr(issue, "path", ""),
    }


def validate_text(
    text: str,
    file: str,
    context_schema: ContextSchema | None = None,
    integrations: Collection[str] | None = None,
) -> ValidationOutcome:
    """Every error (or the loaded ids) and every warning of one policy text.

    `integrations`: those the configuration provides (warn about the others).
    """
    try:
        report = validate_policy_text(
            text, file=file, context_schema=context_schema, integrations=integrations
        )
    except PolicyLoadError as exc:
        errors = [issue_json(i) for i in exc.issues if i.severity == "error"]
        warnings = [issue_json(i) for i in exc.issues if i.severity != "error"]
        return ValidationOutcome(file=file, valid=False, errors=errors, warnings=warnings)
    return ValidationOutcome(
        file=file,
        valid=True,
        policies=[p.id for p in report.policies],
        warnings=[issue_json(i) for i in report.warnings],
    )
