"""Spec 6: with a context schema configured, warn about paths the policies read that it lacks.

The schema is a JSON Schema document describing the request context (see
docs/language-decisions.md, "Context schema"). Only what locates a path is
read: `properties`, `additionalProperties`, `patternProperties`, `items`,
`prefixItems`, `type`, `anyOf`/`oneOf`/`allOf` and local `$ref`s
(`#/...`). Everything else (formats, bounds, `required`) is ignored: the
warning is about names, not values.

Deciding whether a path exists:
- an object schema that lists `properties` is closed: a key it does not list
  exists only through `patternProperties` or an `additionalProperties` that is
  `true` or a schema (JSON Schema's default of "anything goes" would hide
  exactly the typos the warning is for);
- a schema that constrains nothing below itself (`{}`, `true`, an object
  without `properties`, a list without `items`) accepts any path under it;
- a scalar `type` (string, number, ...) has nothing under it;
- a path exists when any branch of `anyOf`/`oneOf`/`allOf` defines it.

The derived facts (`llm.estimated_tokens`, ...) always exist: the engine
computes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path as FsPath
from typing import Any

from policy_core.errors import Issue
from policy_core.ir import Binary, Call, Expr, Index, ListExpr, Lit, MapExpr, Method, Neg, Not, Path
from policy_core.language.source import SourceText, policy_id_position, rule_id_position
from policy_core.model import Policy, Rule
from policy_core.paths import PathSegment, format_path, parse_path
from policy_core.regex import search
from policy_core.syntax.lexer import ExprSyntaxError
from policy_core.syntax.templates import parse_template

__all__ = ["ContextSchema", "ContextSchemaError", "expr_paths", "schema_warnings", "template_paths"]

_DERIVED = frozenset({"estimated_tokens", "estimated_cost", "pii_types", "contains_pii"})
_SCALARS = frozenset({"string", "number", "integer", "boolean", "null"})
_BRANCHES = ("anyOf", "oneOf", "allOf")
_MAX_REFS = 64  # $ref hops followed for one step of a path (cycles end here)


class ContextSchemaError(ValueError):
    """The context schema cannot be used; the message says where and why."""


class ContextSchema:
    """A JSON Schema of the request context, asked which paths it defines."""

    def __init__(self, schema: Any, *, source: str = "<context schema>") -> None:
        if not isinstance(schema, Mapping | bool):
            raise ContextSchemaError(f"{source}: a context schema is a JSON object")
        self._root = schema
        self._source = source

    @classmethod
    def load(cls, path: str | FsPath) -> ContextSchema:
        """A schema from a JSON or YAML file."""
        file = FsPath(path)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ContextSchemaError(f"{file}: cannot read: {exc}") from None
        try:
            if file.suffix == ".json":
                document = json.loads(text)
            else:
                # deferred: ruamel.yaml is only needed for a YAML schema (see source.py)
                from ruamel.yaml import YAML
                from ruamel.yaml.error import YAMLError

                try:
                    document = YAML(typ="safe", pure=True).load(text)
                except YAMLError as exc:
                    raise ValueError(str(exc)) from None
        except ValueError as exc:
            raise ContextSchemaError(f"{file}: not valid JSON or YAML: {exc}") from None
        return cls(document, source=str(file))

    def defines(self, segments: tuple[PathSegment, ...]) -> bool:
        """Whether a context path (`("llm", "model")`) can exist under this schema."""
        level: list[Any] = [self._root]
        for seg in segments:
            below: list[Any] = []
            for node in level:
                for child in self._children(node, seg, 0):
                    if child is True:
                        return True  # unconstrained below: any deeper path exists
                    below.append(child)
            if not below:
                return False
            level = below
        return True

    # --- one step down ---------------------------------------------------

    def _resolve(self, node: Any, hops: int) -> Any:
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
            if hops >= _MAX_REFS:
                raise ContextSchemaError(f"{self._source}: $ref chain too long or cyclic")
            node = self._pointer(node["$ref"])
            hops += 1
        return node

    def _pointer(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ContextSchemaError(
                f"{self._source}: only local $ref ('#/...') are supported: {ref}"
            )
        node: Any = self._root
        for raw in ref[1:].split("/")[1:]:
            key = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise ContextSchemaError(f"{self._source}: $ref {ref} points nowhere")
        return node

    def _children(self, node: Any, seg: PathSegment, hops: int) -> Iterator[Any]:
        """The schemas of `node[seg]`: `True` for "anything", nothing when it cannot exist."""
        node = self._resolve(node, hops)
        if node is True:
            yield True
            return
        if not isinstance(node, Mapping):
            return  # `false`, or not a schema
        own = self._own_children(node, seg)
        if own is not None:
            yield from own
        for keyword in _BRANCHES:
            branches = node.get(keyword)
            if isinstance(branches, list):
                for branch in branches:
                    yield from self._children(branch, seg, hops)

    @staticmethod
    def _own_children(node: Mapping[str, Any], seg: PathSegment) -> list[Any] | None:
        declared = node.get("type")
        types = set(declared) if isinstance(declared, list) else {declared} - {None}
        structural = any(
            k in node
            for k in (
                "properties",
                "additionalProperties",
                "patternProperties",
                "items",
                "prefixItems",
            )
        )
        if not types and not structural:
            # Only branches (anyOf, ...) say anything, or nothing at all: with branches
            # the branches decide; an empty schema accepts anything.
            return None if any(k in node for k in _BRANCHES) else [True]
        if types and types <= _SCALARS:
            return []
        if isinstance(seg, int):
            if types and "array" not in types:
                return []
            prefix = node.get("prefixItems")
            if isinstance(prefix, list) and seg < len(prefix):
                return [prefix[seg]]
            items = node.get("items")
            if items is None:
                return [True] if not isinstance(prefix, list) else []
            return [items] if items is not False else []
        if types and "object" not in types:
            return []
        props = node.get("properties")
        if isinstance(props, Mapping) and seg in props:
            return [props[seg]]
        found: list[Any] = []
        patterns = node.get("patternProperties")
        if isinstance(patterns, Mapping):
            for pattern, schema in patterns.items():
                if isinstance(pattern, str) and search(pattern, seg):
                    found.append(schema)
        extra = node.get("additionalProperties")
        if extra is True or isinstance(extra, Mapping):
            found.append(extra)
        elif extra is None and not isinstance(props, Mapping) and not found:
            found.append(True)  # an object that lists no properties is a free-form map
        return found


# --- the paths a policy reads ---------------------------------------------------


def _paths(node: Expr | None) -> Iterator[Path]:
    if node is None:
        return
    if isinstance(node, Path):
        yield node
    elif isinstance(node, Binary):
        yield from _paths(node.left)
        yield from _paths(node.right)
    elif isinstance(node, Not | Neg):
        yield from _paths(node.operand)
    elif isinstance(node, Index):
        yield from _paths(node.target)
        yield from _paths(node.index)
    elif isinstance(node, Method):
        yield from _paths(node.target)
        for arg in node.args:
            yield from _paths(arg)
    elif isinstance(node, Call):
        for arg in node.args:
            yield from _paths(arg)
    elif isinstance(node, ListExpr):
        for item in node.items:
            yield from _paths(item)
    elif isinstance(node, MapExpr):
        for value in node.values:
            yield from _paths(value)
    else:
        assert isinstance(node, Lit)


def _template_paths(text: str | None) -> Iterator[Path]:
    if not text or "{{" not in text:
        return
    try:
        parts = parse_template(text)
    except ExprSyntaxError:
        return  # the loader reported it already
    for part in parts:
        if not isinstance(part, str):
            yield from _paths(part)


expr_paths = _paths
template_paths = _template_paths

_Read = tuple[str, Rule | None, Path | tuple[PathSegment, ...]]


def _policy_reads(policy: Policy) -> Iterator[_Read]:
    """(who reads or modifies, rule, path) for every context path the policy uses."""
    for path in _paths(policy.scope_ir):
        yield "scope reads", None, path
    for exception in policy.exceptions:
        for path in _paths(exception.condition_ir):
            yield f"exception {exception.id} reads", None, path
    for rule in policy.rules:
        where = f"rule {rule.id}"
        for path in _paths(rule.condition_ir):
            yield f"{where} reads", rule, path
        for path in _template_paths(rule.action.reason):
            yield f"{where}'s reason reads", rule, path
        for key in rule.action.modifications:
            try:
                yield f"{where} modifies", rule, parse_path(key)
            except ValueError:
                continue  # reported by the loader


def schema_warnings(
    policy: Policy, schema: ContextSchema, src: SourceText, doc: Any
) -> list[Issue]:
    """One warning per distinct path of `policy` that `schema` does not define."""
    warnings: list[Issue] = []
    seen: set[tuple[PathSegment, ...]] = set()
    for where, rule, path in _policy_reads(policy):
        segments = (path.root, *path.segments) if isinstance(path, Path) else path
        if not segments or segments in seen:
            continue
        seen.add(segments)
        if segments[0] == "llm" and len(segments) > 1 and segments[1] in _DERIVED:
            continue
        if segments[0] == "response":
            continue  # the response section is the spec's (7.1), checked at load

        if not schema.defines(segments):
            line, col = (
                rule_id_position(doc, rule.id) if rule is not None else policy_id_position(doc)
            )
            warnings.append(
                src.issue(
                    line,
                    col,
                    f"{policy.metadata.id}: {where} {format_path(segments)}, "
                    "which the context schema does not define",
                    warn=True,
                )
            )
    return warnings
