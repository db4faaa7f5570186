"""Spec 7.1: which paths a rule of each phase may read and set (load errors).

- A request-phase rule or exception reads no `response.*` path: the section
  does not exist while the request is judged (the rule would silently see
  null), and sets none.
- A response-phase rule reads only the fields of the `response` section the
  spec defines (and the derived facts); `response.tool_calls[...]` may go
  deeper, since tool arguments are the caller's. It sets only paths under
  `response` (the request has been sent by then).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from policy_core.ir import (
    Binary,
    Call,
    Expr,
    Index,
    ListExpr,
    Lit,
    MapExpr,
    Method,
    Neg,
    Not,
    Path,
)
from policy_core.language.context_schema import expr_paths, template_paths
from policy_core.model import Action, Obligation, RedactObligation
from policy_core.paths import parse_path
from policy_core.syntax.printer import to_expression

__all__ = ["RESPONSE_FIELDS", "TextUses", "check_phase", "phase_problems"]

_TEXT = ("text",)
_PII_FACTS = frozenset({"contains_pii", "pii_types"})

#: The `response` section (spec 7.1): given by the caller, or derived.
RESPONSE_FIELDS = frozenset(
    {
        "text",
        "finish_reason",
        "model",
        "tool_calls",
        "usage",
        "cost",
        "contains_pii",
        "pii_types",
        "tool_names",
    }
)
_USAGE_FIELDS = frozenset({"prompt_tokens", "completion_tokens"})


def _segments(path: Path | tuple[Any, ...]) -> tuple[Any, ...]:
    return (path.root, *path.segments) if isinstance(path, Path) else path


def _read_problem(segments: tuple[Any, ...], phase: str) -> str | None:
    if not segments or segments[0] != "response":
        return None
    shown = to_expression(Path(root="response", segments=tuple(segments[1:])))
    if phase == "request":
        return (
            f"reads {shown}, which exists only in the response phase "
            "(add phase: response to judge the model's answer)"
        )
    if len(segments) == 1:
        return None  # the whole section, e.g. has(response) or a template
    name = segments[1]
    if name not in RESPONSE_FIELDS:
        known = ", ".join(sorted(RESPONSE_FIELDS))
        return f"reads {shown}, which the response section does not have (it has {known})"
    if name == "usage" and len(segments) > 2 and segments[2] not in _USAGE_FIELDS:
        return f"reads {shown}; response.usage has prompt_tokens and completion_tokens"
    return None


def phase_problems(
    phase: str,
    condition: Expr | None,
    action: Action | None,
    obligations: Iterable[Obligation],
) -> Iterator[str]:
    """Every phase problem of one rule or exception, as a message."""
    if phase == "request" and not _mentions_response(condition, action, obligations):
        return  # a request-phase problem is a read or write of response.*
    seen: set[tuple[Any, ...]] = set()
    reads = list(expr_paths(condition))
    if action is not None:
        reads += list(template_paths(action.reason))
    for path in reads:
        segments = _segments(path)
        if segments in seen:
            continue
        seen.add(segments)
        problem = _read_problem(segments, phase)
        if problem is not None:
            yield problem
    written: list[str] = list(action.modifications) if action is not None else []
    for obligation in obligations:
        if isinstance(obligation, RedactObligation):
            written += [f for f in obligation.fields if f.split(".", 1)[0].startswith("response")]
    for key in written:
        try:
            segments = tuple(parse_path(key))
        except ValueError:
            continue  # reported by the loader
        in_response = bool(segments) and segments[0] == "response"
        if phase == "request" and in_response:
            yield f"sets {key}, which exists only in the response phase"
        elif (
            phase == "response"
            and not in_response
            and action is not None
            and key in action.modifications
        ):
            yield f"modifies {key}; a response-phase rule may only modify paths under response"
        elif (
            phase == "response"
            and in_response
            and len(segments) > 1
            and segments[1] not in RESPONSE_FIELDS
        ):
            yield f"sets {key}, which the response section does not have"


def _mentions_response(
    condition: Expr | None, action: Action | None, obligations: Iterable[Obligation]
) -> bool:
    """False only if nothing the rule reads or sets can be under `response` (a quick
    superset test: the word anywhere in the encoded condition, reason or keys)."""
    if condition is not None and b"response" in msgspec.json.encode(condition):
        return True
    if action is not None:
        if action.reason and "response" in action.reason:
            return True
        if any("response" in key for key in action.modifications):
            return True
    return any(
        isinstance(o, RedactObligation) and any("response" in f for f in o.fields)
        for o in obligations
    )


def check_phase(
    c: Any,
    node: Any,
    path: str,
    phase: str,
    condition: Expr | None,
    action: Action | None,
    obligations: Iterable[Obligation],
) -> None:
    """Report each problem of `phase_problems` as a load error at the rule's position."""
    for message in phase_problems(phase, condition, action, obligations):
        c.error(c.where(node), f"{path} ({phase} phase) {message}", path)


class TextUses:
    """How conditions read `response.text`: patterns, the PII detector, or whole (spec 7.2)."""

    def __init__(self) -> None:
        self.patterns: list[str] = []
        self.pii = False
        self.hold_all = False

    def visit(self, node: Expr | None) -> None:
        if node is None:
            return
        if isinstance(node, Path):
            if node.root == "response":
                if not node.segments or node.segments[0] == "text":
                    self.hold_all = True  # response.text (or the section) read as a value
                elif node.segments[0] in _PII_FACTS:
                    self.pii = True
            return
        if isinstance(node, Method) and _is_text(node.target):
            arg = node.args[0] if node.args else None
            if isinstance(arg, Lit) and type(arg.value) is str:
                if node.name == "matches":
                    self.patterns.append(arg.value)
                    return
                if node.name in ("contains", "starts_with"):
                    self.patterns.append(re.escape(arg.value))
                    return
            self.hold_all = True
            for a in node.args:
                self.visit(a)
            return
        if (
            isinstance(node, Call)
            and node.name == "contains_pii"
            and node.args
            and _is_text(node.args[0])
        ):
            self.pii = True
            return
        for child in _children(node):
            self.visit(child)


def _is_text(node: Expr) -> bool:
    return isinstance(node, Path) and node.root == "response" and node.segments == _TEXT


def _children(node: Expr) -> Iterable[Expr]:
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Not | Neg):
        return (node.operand,)
    if isinstance(node, Index):
        return (node.target, node.index)
    if isinstance(node, Method):
        return (node.target, *node.args)
    if isinstance(node, Call):
        return node.args
    if isinstance(node, ListExpr):
        return node.items
    if isinstance(node, MapExpr):
        return node.values
    return ()
