"""One document (ruamel map) -> Policy, collecting every problem with its position."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec

from policy_core.errors import Issue
from policy_core.ir import Expr
from policy_core.language.conditions import ConditionError, parse_condition, parse_path_text
from policy_core.language.phases import check_phase
from policy_core.language.source import SourceText, position, to_plain
from policy_core.model import (
    Action,
    Obligation,
    Policy,
    PolicyConfig,
    PolicyException,
    PolicyMetadata,
    PolicyStatus,
    RedactObligation,
    Rule,
    SuggestAlternativeObligation,
)
from policy_core.paths import parse_path
from policy_core.regex import check_regex
from policy_core.syntax.lexer import ExprSyntaxError
from policy_core.syntax.printer import to_expression
from policy_core.syntax.templates import parse_template

__all__ = ["build_policy", "canonical_digest"]

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
RESERVED_IDS = frozenset({"default", "scope"})
_TOP = {"version", "status", "metadata", "config", "scope", "rules", "exceptions"}
_METADATA = {"id", "name", "namespace", "version", "description", "tags", "priority", "owner"}
_CONFIG = {"default_decision", "fail_open", "cache_ttl_seconds", "audit", "stream_window"}
_RULE = {
    "id",
    "name",
    "description",
    "priority",
    "enabled",
    "condition",
    "action",
    "obligations",
    "phase",
}
_ACTION = {"decision", "reason", "modifications", "metadata"}
_EXCEPTION = {"id", "name", "description", "enabled", "condition", "reason", "phase"}
_VERSIONS = {"1", "1.0"}


def canonical_digest(source: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(msgspec.json.encode(source, order="sorted")).hexdigest()


class _Checker:
    def __init__(self, src: SourceText, issues: list[Issue]) -> None:
        self.src = src
        self.issues = issues

    def error(self, at: tuple[int, int], message: str, path: str) -> None:
        self.issues.append(self.src.issue(at[0], at[1], message, path))

    # positions ---------------------------------------------------------------
    @staticmethod
    def where(node: Any, default: tuple[int, int] = (0, 0)) -> tuple[int, int]:
        lc = getattr(node, "lc", None)
        if lc is not None and lc.line is not None:
            return int(lc.line), int(lc.col)
        return default

    @staticmethod
    def key_at(node: Any, key: str, default: tuple[int, int]) -> tuple[int, int]:
        return position(node, "key", key, default)

    @staticmethod
    def value_at(node: Any, key: str, default: tuple[int, int]) -> tuple[int, int]:
        return position(node, "value", key, default)

    # generic checks ------------------------------------------------------------
    def mapping(self, node: Any, allowed: set[str], path: str, at: tuple[int, int]) -> bool:
        if not isinstance(node, dict):
            self.error(at, f"{path or 'document'} must be a mapping", path)
            return False
        for key in node:
            if key not in allowed:
                hint = ", ".join(sorted(allowed))
                self.error(
                    self.key_at(node, key, at),
                    f"unknown key {str(key)!r} in {path or 'document'} (allowed: {hint})",
                    f"{path}.{key}" if path else str(key),
                )
        return True

    def typed(
        self, node: Any, key: str, kind: type | tuple[type, ...], path: str, what: str
    ) -> Any:
        if key not in node:
            return None
        value = node[key]
        bad = isinstance(value, bool) and kind in (int, (int,))
        if value is None or bad or not isinstance(value, kind):
            self.error(
                self.value_at(node, key, self.where(node)),
                f"{path}.{key} must be {what}",
                f"{path}.{key}",
            )
            return None
        return to_plain(value)

    def choice(self, node: Any, key: str, options: tuple[str, ...], path: str) -> str | None:
        if key not in node:
            return None
        value = node[key]
        if not isinstance(value, str) or value not in options:
            self.error(
                self.value_at(node, key, self.where(node)),
                f"{path}.{key} must be one of {', '.join(options)}, not {to_plain(value)!r}",
                f"{path}.{key}",
            )
            return None
        return str(value)

    def ident(self, node: Any, path: str, what: str, reserved: bool = False) -> str | None:
        at = self.where(node)
        if "id" not in node:
            self.error(at, f"{what} needs an id", path)
            return None
        value = node["id"]
        vat = self.value_at(node, "id", at)
        if not isinstance(value, str) or not ID_PATTERN.match(value):
            self.error(
                vat,
                f"invalid {what} id {to_plain(value)!r}: use letters, digits, '.', '_' and '-' "
                "(starting with a letter or digit, at most 128 characters)",
                f"{path}.id",
            )
            return None
        if reserved and value in RESERVED_IDS:
            self.error(vat, f"{what} id {value!r} is reserved; choose another id", f"{path}.id")
            return None
        return str(value)

    def condition(self, node: Any, key: str, path: str) -> tuple[Any, Expr | None]:
        if key not in node or node[key] is None:
            return None, None
        line, col = self.value_at(node, key, self.where(node))
        try:
            ir = parse_condition(self.src, node[key], line, col)
        except ConditionError as exc:
            self.error((exc.line, exc.col), exc.message, f"{path}.{key}")
            return to_plain(node[key]), None
        return to_plain(node[key]), ir

    def template(self, node: Any, key: str, path: str) -> str | None:
        value = self.typed(node, key, str, path, "a string")
        if value is None:
            return None
        try:
            parse_template(value, check_regex=check_regex)
        except ExprSyntaxError as exc:
            line, col = self.value_at(node, key, self.where(node))
            at = self.src.scalar_offset(line, col, exc.offset)
            self.error(at, f"in template: {exc.message}", f"{path}.{key}")
        return str(value)


def build_policy(
    src: SourceText, doc: Any, issues: list[Issue], at: tuple[int, int] | None = None
) -> Policy | None:
    """Validate one document; append its problems to `issues`; the Policy when it has none."""
    c = _Checker(src, issues)
    before = len(issues)
    at = c.where(doc, at or (0, 0))
    if not c.mapping(doc, _TOP, "", at):
        return None
    version = "1"
    if "version" in doc:
        raw = to_plain(doc["version"])
        version = str(raw)
        if isinstance(raw, bool) or version not in _VERSIONS:
            c.error(
                c.value_at(doc, "version", at), f'unsupported version {raw!r}; use "1"', "version"
            )
    status = c.choice(doc, "status", ("active", "draft", "deprecated"), "document") or "active"
    metadata = _metadata(c, doc, at)
    config = _config(c, doc, at)
    scope_src, scope_ir = c.condition(doc, "scope", "document")
    ids: dict[str, int] = {}  # rule and exception ids share one namespace per policy
    rules = _rules(c, doc, at, ids)
    exceptions = _exceptions(c, doc, at, ids)
    if len(issues) > before or metadata is None:
        return None
    source = to_plain(doc)
    return Policy(
        version=version,
        status=PolicyStatus(status),
        metadata=metadata,
        config=config,
        scope=scope_src,
        scope_ir=scope_ir,
        rules=tuple(rules),
        exceptions=tuple(exceptions),
        source=source,
        digest=canonical_digest(source),
        file=src.file,
    )


def _metadata(c: _Checker, doc: Any, at: tuple[int, int]) -> PolicyMetadata | None:
    if "metadata" not in doc:
        c.error(at, "missing required key 'metadata' (with at least an id)", "metadata")
        return None
    node = doc["metadata"]
    if not c.mapping(node, _METADATA, "metadata", c.value_at(doc, "metadata", at)):
        return None
    pid = c.ident(node, "metadata", "policy")
    namespace = c.typed(node, "namespace", str, "metadata", "a string") or "default"
    if (
        "namespace" in node
        and isinstance(node["namespace"], str)
        and not ID_PATTERN.match(namespace)
    ):
        c.error(
            c.value_at(node, "namespace", at),
            f"invalid namespace {namespace!r}: use letters, digits, '.', '_' and '-'",
            "metadata.namespace",
        )
    label = node.get("version")
    tags = c.typed(node, "tags", list, "metadata", "a list of strings") or []
    if any(not isinstance(t, str) for t in tags):
        c.error(
            c.value_at(node, "tags", at), "metadata.tags must be a list of strings", "metadata.tags"
        )
    priority = c.typed(node, "priority", int, "metadata", "an integer")
    if pid is None:
        return None
    return PolicyMetadata(
        id=pid,
        name=c.typed(node, "name", str, "metadata", "a string") or pid,
        namespace=namespace,
        version=None if label is None else str(to_plain(label)),
        description=c.typed(node, "description", str, "metadata", "a string"),
        tags=tuple(str(t) for t in tags),
        priority=priority or 0,
        owner=c.typed(node, "owner", str, "metadata", "a string"),
    )


def _config(c: _Checker, doc: Any, at: tuple[int, int]) -> PolicyConfig:
    node = doc.get("config")
    if node is None or not c.mapping(node, _CONFIG, "config", c.value_at(doc, "config", at)):
        return PolicyConfig()
    ttl = c.typed(node, "cache_ttl_seconds", int, "config", "a whole number of seconds")
    if ttl is not None and ttl < 0:
        c.error(
            c.value_at(node, "cache_ttl_seconds", at),
            "config.cache_ttl_seconds must be >= 0",
            "config",
        )
        ttl = None
    fail_open = c.typed(node, "fail_open", bool, "config", "true or false")
    window = c.typed(node, "stream_window", int, "config", "a whole number of characters")
    if window is not None and window < 1:
        c.error(
            c.value_at(node, "stream_window", at), "config.stream_window must be >= 1", "config"
        )
        window = None
    return PolicyConfig(
        stream_window=window,
        default_decision=c.choice(node, "default_decision", ("none", "allow", "deny"), "config")
        or "none",  # type: ignore[arg-type]
        fail_open=bool(fail_open),
        cache_ttl_seconds=300 if ttl is None else ttl,
        audit=c.choice(node, "audit", ("all", "decisions_other_than_allow", "none"), "config")
        or "all",  # type: ignore[arg-type]
    )


def _items(
    c: _Checker, doc: Any, key: str, at: tuple[int, int], required: bool
) -> list[tuple[int, Any]]:
    if key not in doc:
        if required:
            c.error(at, f"missing required key {key!r} (it may be an empty list)", key)
        return []
    node = doc[key]
    if node is None and not required:
        return []
    if not isinstance(node, list):
        c.error(c.value_at(doc, key, at), f"{key} must be a list", key)
        return []
    return list(enumerate(node))


def _duplicate(
    c: _Checker, seen: dict[str, int], ident: str | None, node: Any, what: str, path: str
) -> None:
    if ident is None:
        return
    line = c.value_at(node, "id", c.where(node))
    if ident in seen:
        c.error(
            line,
            f"duplicate {what} id {ident!r} (first defined on line {seen[ident] + 1})",
            f"{path}.id",
        )
    else:
        seen[ident] = line[0]


def _rules(c: _Checker, doc: Any, at: tuple[int, int], seen: dict[str, int]) -> list[Rule]:
    rules: list[Rule] = []
    for index, node in _items(c, doc, "rules", at, required=True):
        path = f"rules[{index}]"
        nat = c.where(node, at)
        if not c.mapping(node, _RULE, path, nat):
            continue
        rid = c.ident(node, path, "rule", reserved=True)
        _duplicate(c, seen, rid, node, "rule", path)
        cond_src, cond_ir = c.condition(node, "condition", path)
        action = _action(c, node, path, nat)
        obligations = _obligations(c, node, path, nat)
        priority = c.typed(node, "priority", int, path, "an integer")
        enabled = c.typed(node, "enabled", bool, path, "true or false")
        phase = c.choice(node, "phase", ("request", "response"), path) or "request"
        if rid is None or action is None:
            continue
        check_phase(c, node, path, phase, cond_ir, action, obligations)
        rules.append(
            Rule(
                id=rid,
                name=c.typed(node, "name", str, path, "a string") or rid,
                description=c.typed(node, "description", str, path, "a string"),
                priority=priority or 0,
                enabled=True if enabled is None else enabled,
                condition=cond_src,
                condition_ir=cond_ir,
                action=action,
                obligations=tuple(obligations),
                phase=phase,  # type: ignore[arg-type]
            )
        )
    return rules


def _action(c: _Checker, rule: Any, path: str, at: tuple[int, int]) -> Action | None:
    if "action" not in rule:
        c.error(at, f"{path} needs an action with a decision", f"{path}.action")
        return None
    node = rule["action"]
    apath = f"{path}.action"
    aat = c.value_at(rule, "action", at)
    if not c.mapping(node, _ACTION, apath, aat):
        return None
    if "decision" not in node:
        c.error(aat, f"{apath} needs a decision (allow, deny, warn or modify)", apath)
        return None
    decision = c.choice(node, "decision", ("allow", "deny", "warn", "modify"), apath)
    reason = c.template(node, "reason", apath)
    metadata = c.typed(node, "metadata", dict, apath, "a mapping") or {}
    modifications = c.typed(node, "modifications", dict, apath, "a mapping of path to value") or {}
    if modifications and decision is not None and decision != "modify":
        c.error(
            c.key_at(node, "modifications", aat),
            f"modifications are only allowed with decision: modify (this rule says {decision})",
            f"{apath}.modifications",
        )
    mods_node = node.get("modifications")
    canonical: dict[str, Any] = {}
    for key, value in modifications.items():
        at = c.key_at(mods_node, key, aat)
        try:
            path = to_expression(parse_path_text(c.src, key, *at, "modification path"))
        except ConditionError as exc:
            c.error((exc.line, exc.col), exc.message, f"{apath}.modifications")
            continue
        # `llm['model']` and `llm.model` are one path: keyed by the printed form (spec 5.3).
        if path in canonical:
            c.error(
                at,
                f"modification path {key!r} is given twice (as {path})",
                f"{apath}.modifications",
            )
        canonical[path] = value
    modifications = canonical
    if decision is None:
        return None
    return Action(decision=decision, reason=reason, modifications=modifications, metadata=metadata)  # type: ignore[arg-type]


def _obligations(c: _Checker, rule: Any, path: str, at: tuple[int, int]) -> list[Obligation]:
    out: list[Obligation] = []
    for index, node in _items(c, rule, "obligations", at, required=False):
        opath = f"{path}.obligations[{index}]"
        oat = c.where(node, at)
        if not isinstance(node, dict):
            c.error(oat, f"{opath} must be a mapping with a type", opath)
            continue
        plain = to_plain(node)
        if "rule" in plain:
            c.error(c.key_at(node, "rule", oat), f"{opath}: 'rule' is set by the engine", opath)
            continue
        try:
            obligation = msgspec.convert(plain, Obligation)
        except msgspec.ValidationError as exc:
            c.error(oat, f"invalid obligation: {_obligation_message(str(exc), plain)}", opath)
            continue
        if isinstance(obligation, RedactObligation) and not _redact_ok(
            c, obligation, node, opath, oat
        ):
            continue
        if isinstance(obligation, SuggestAlternativeObligation) and not (
            obligation.models or obligation.model or obligation.message
        ):
            c.error(oat, "suggest_alternative needs models, model or message", opath)
            continue
        out.append(obligation)
    return out


def _redact_ok(
    c: _Checker, obligation: RedactObligation, node: Any, opath: str, at: tuple[int, int]
) -> bool:
    """A redact obligation is applied to every stored record: check it now, not then."""
    # deferred: only documents with a redact obligation load the primitives (PII tables)
    from policy_core.primitives.redact import REDACT_PATTERNS

    ok = True
    if obligation.pattern not in REDACT_PATTERNS:
        known = ", ".join(sorted(REDACT_PATTERNS))
        c.error(
            c.value_at(node, "pattern", at),
            f"unknown redact pattern {obligation.pattern!r} (one of: {known})",
            opath,
        )
        ok = False
    for field in obligation.fields:
        try:
            parse_path(field)
        except ValueError as exc:
            c.error(c.value_at(node, "fields", at), f"invalid redact field {field!r}: {exc}", opath)
            ok = False
    return ok


def _obligation_message(message: str, plain: dict[str, Any]) -> str:
    if "type" not in plain:
        return (
            "missing 'type' (redact, audit, log, throttle, suggest_alternative, require_approval)"
        )
    if "Invalid value" in message and "$.type" in message:
        return (
            f"unknown obligation type {plain['type']!r} (known: redact, audit, log, throttle, "
            "suggest_alternative, require_approval)"
        )
    return message.replace("Object contains unknown field", "unknown key")


def _exceptions(
    c: _Checker, doc: Any, at: tuple[int, int], seen: dict[str, int]
) -> list[PolicyException]:
    out: list[PolicyException] = []
    for index, node in _items(c, doc, "exceptions", at, required=False):
        path = f"exceptions[{index}]"
        nat = c.where(node, at)
        if not c.mapping(node, _EXCEPTION, path, nat):
            continue
        eid = c.ident(node, path, "exception", reserved=True)
        _duplicate(c, seen, eid, node, "exception", path)
        cond_src, cond_ir = c.condition(node, "condition", path)
        reason = c.typed(node, "reason", str, path, "a string")
        enabled = c.typed(node, "enabled", bool, path, "true or false")
        phase = c.choice(node, "phase", ("request", "response"), path) or "request"
        if eid is None:
            continue
        check_phase(c, node, path, phase, cond_ir, None, ())
        out.append(
            PolicyException(
                id=eid,
                name=c.typed(node, "name", str, path, "a string") or eid,
                description=c.typed(node, "description", str, path, "a string"),
                enabled=True if enabled is None else enabled,
                condition=cond_src,
                condition_ir=cond_ir,
                reason=reason,
                phase=phase,  # type: ignore[arg-type]
            )
        )
    return out
