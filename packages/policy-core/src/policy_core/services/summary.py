"""Human summaries of what changed between two revisions of a policy document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["summarize_change"]

_LISTS = ("rules", "exceptions")


def summarize_change(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str:
    """E.g. "rules added: r3; rules removed: r1; rules changed: r2; changed: config.fail_open".

    `old` None means the policy was created; identical documents give "no change".
    """
    if old is None:
        rules = [_rule_id(r) for r in _items(new, "rules")]
        return f"created with {len(rules)} rule(s)" + (f": {', '.join(rules)}" if rules else "")
    parts: list[str] = []
    for key in _LISTS:
        parts += _list_changes(key, _items(old, key), _items(new, key))
    changed = _paths(
        {k: v for k, v in old.items() if k not in _LISTS},
        {k: v for k, v in new.items() if k not in _LISTS},
        "",
    )
    if changed:
        parts.append("changed: " + ", ".join(changed))
    return "; ".join(parts) or "no change"


def _items(doc: Mapping[str, Any], key: str) -> list[Any]:
    value = doc.get(key)
    return list(value) if isinstance(value, list) else []


def _rule_id(item: Any) -> str:
    return str(item.get("id")) if isinstance(item, Mapping) else "?"


def _list_changes(kind: str, old: list[Any], new: list[Any]) -> list[str]:
    before = {_rule_id(r): r for r in old}
    after = {_rule_id(r): r for r in new}
    added = [i for i in after if i not in before]
    removed = [i for i in before if i not in after]
    changed = [i for i in after if i in before and after[i] != before[i]]
    if not added and not removed and not changed and list(before) != list(after):
        return [f"{kind} reordered"]
    out = []
    for label, ids in (("added", added), ("removed", removed), ("changed", changed)):
        if ids:
            out.append(f"{kind} {label}: {', '.join(ids)}")
    return out


def _paths(old: Any, new: Any, prefix: str) -> list[str]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            out += _paths(old.get(key), new.get(key), path)
        return out
    return [prefix] if old != new else []
