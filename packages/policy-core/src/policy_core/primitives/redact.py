"""Redaction: PII in a text, and the `redact {fields, pattern}` obligation on a context.

`redact_context` is what the engine applies to what it stores (audit records)
and what callers may apply before forwarding a request: it returns a redacted
deep copy and never mutates its input.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from policy_core.paths import PathSegment, parse_path
from policy_core.primitives.pii import PII_TYPES, find_pii

__all__ = [
    "DEFAULT_PLACEHOLDER",
    "REDACTED",
    "REDACT_PATTERNS",
    "redact_context",
    "redact_text",
]

DEFAULT_PLACEHOLDER = "[REDACTED:{type}]"
# What a whole value becomes under the `all` (or `*`) pattern.
REDACTED = "[REDACTED]"
# Every valid `pattern` of a redact obligation.
REDACT_PATTERNS: frozenset[str] = frozenset({"pii", "all", "*", *PII_TYPES})


def _check_types(types: Collection[str] | None) -> frozenset[str] | None:
    if types is None:
        return None
    chosen = frozenset(types)
    unknown = sorted(chosen - set(PII_TYPES))
    if unknown:
        raise ValueError(f"unknown PII type(s) {unknown}; known types: {list(PII_TYPES)}")
    return chosen


def redact_text(
    text: str,
    types: Collection[str] | None = None,
    placeholder: str = DEFAULT_PLACEHOLDER,
) -> str:
    """Replace each PII item of `text` (of `types`; None = every type) by `placeholder`.

    `{type}` in the placeholder becomes the item's type (a plain replacement,
    not `str.format`, so other braces are kept). Raises `ValueError` for an
    unknown type name.
    """
    chosen = _check_types(types)
    if not text:
        return text
    matches = find_pii(text, chosen)
    if not matches:
        return text
    parts: list[str] = []
    pos = 0
    for m in matches:
        parts.append(text[pos : m.start])
        parts.append(placeholder.replace("{type}", m.type))
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts)


def _copy(value: Any) -> Any:
    """A deep copy of JSON-shaped data (maps, lists, tuples; scalars are immutable)."""
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


def _redact_value(value: Any, types: frozenset[str] | None, placeholder: str) -> Any:
    """Redact every string leaf of an already copied value (in place for containers)."""
    if isinstance(value, str):
        return redact_text(value, types, placeholder)
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _redact_value(item, types, placeholder)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = _redact_value(item, types, placeholder)
    return value


def _parent(root: dict[str, Any], segments: tuple[PathSegment, ...]) -> Any:
    """The container holding the last segment, or None when the path is missing."""
    cur: Any = root
    for seg in segments[:-1]:
        cur = _child(cur, seg)
        if cur is None:
            return None
    return cur if _child(cur, segments[-1]) is not None else None


def _child(cur: Any, seg: PathSegment) -> Any:
    if isinstance(seg, str):
        return cur.get(seg) if isinstance(cur, dict) else None
    if isinstance(seg, bool) or not isinstance(cur, list) or not 0 <= seg < len(cur):
        return None
    return cur[seg]


def redact_context(
    context: Mapping[str, Any],
    fields: Sequence[str],
    pattern: str = "pii",
    placeholder: str = DEFAULT_PLACEHOLDER,
) -> dict[str, Any]:
    """A deep copy of `context` with each of `fields` redacted; the input is untouched.

    `fields` are context paths (`llm.prompt`, `llm.messages`,
    `metadata['x-key']`, `request.tags[0]`). Under a path, a string has its PII
    replaced by `placeholder`, and lists and maps are redacted recursively
    (every string leaf; map keys, numbers and booleans are kept). `pattern` is
    `pii` (every PII type), one PII type name (e.g. `email`), or `all` / `*`
    (the whole value becomes `"[REDACTED]"`). A path that does not exist, or
    holds null, is ignored. Raises `ValueError` for a malformed path or an
    unknown pattern.
    """
    if pattern not in REDACT_PATTERNS:
        raise ValueError(
            f"unknown redact pattern {pattern!r}; use one of {sorted(REDACT_PATTERNS)}"
        )
    paths = [parse_path(field) for field in fields]
    types = None if pattern in ("pii", "all", "*") else frozenset({pattern})
    result: dict[str, Any] = _copy(context)
    for segments in paths:
        parent = _parent(result, segments)
        if parent is None:
            continue
        last = segments[-1]
        if pattern in ("all", "*"):
            parent[last] = REDACTED
        else:
            parent[last] = _redact_value(parent[last], types, placeholder)
    return result
