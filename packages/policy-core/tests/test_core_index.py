"""The rule index (compiler/index.py) never changes a decision.

Hypothesis draws sets of up to 2,000 rules from a pool of conjuncts that
overlap on the indexed paths (equalities and memberships on llm.model,
team.id and project.id of mixed literal types, prompt regexes), with
conjuncts that raise on some contexts before and after them, exceptions,
scopes, drafts, fail-open policies and rule priorities; and contexts whose
values hit, miss, or have the wrong type. The indexed engine must give the
same decision, every field (errors, exceptions, shadow), as the engine that
runs every rule, and the same trace when asked for one.
test_core_properties.py checks the indexed engine against the reference
interpreter on its random policies as well.
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from policy_core import PolicyEngine
from policy_core.compiler import index as rule_index
from policy_core.ir import Binary, Expr, Lit
from policy_core.language import parse_expression
from policy_core.model import (
    Action,
    AuditObligation,
    Policy,
    PolicyConfig,
    PolicyException,
    PolicyMetadata,
    PolicyStatus,
    Rule,
)


@contextlib.contextmanager
def index_threshold(rules: int, policies: int | None = None) -> Iterator[None]:
    """Policies of at least `rules` rules are indexed while the block runs, and selections
    of at least `policies` skippable policies (PolicyIndex; default: as it is)."""
    saved = rule_index.INDEX_MIN_RULES, rule_index.INDEX_MIN_POLICIES
    rule_index.INDEX_MIN_RULES = rules
    if policies is not None:
        rule_index.INDEX_MIN_POLICIES = policies
    try:
        yield
    finally:
        rule_index.INDEX_MIN_RULES, rule_index.INDEX_MIN_POLICIES = saved


def engines(policies: list[Policy]) -> tuple[PolicyEngine, PolicyEngine]:
    """(indexed, unindexed) engines of the same policies: the indexed one with the rule
    index in every policy and the policy index over any selection of two or more."""
    with index_threshold(1, policies=2):
        indexed = PolicyEngine(policies)
    with index_threshold(10**9):
        plain = PolicyEngine(policies)
    return indexed, plain


# Conjuncts on the indexed paths (keys), and others: some raise on some contexts.
KEYED = [
    *(f'llm.model == "m{k}"' for k in range(8)),
    'llm.model in ["m1", "m2", "m9"]',
    'llm.model in ["m3"]',
    *(f'team.id == "t{k}"' for k in range(5)),
    "team.id == 3",
    "team.id == 3.0",
    "team.id == true",
    "team.id == null",
    'team.id in ["t1", "t4"]',
    "project.id in [1, 2.5]",
    "project.id == 2",
    '"t2" == team.id',
    'llm.prompt.matches("a")',
    'llm.prompt.matches("(?i)ab+c")',
    'llm.prompt.matches("\\\\d+")',
    'llm.prompt.matches("b$")',
    'team.tier.matches("^f")',
]
OTHER = [
    "llm.max_tokens > 100",  # raises on a string
    "size(llm.prompt) > 3",  # raises on a number
    'llm.model.starts_with("m1")',
    '!user.has_permission("x.y")',
    "has(llm.model)",
    'team.tier != "free"',
    '!(team.id == "t1")',
    'llm.model not in ["m0"]',
    "team.tier",  # not a boolean: raises on a string
    "llm.estimated_cost > 0.001",
    "true",
    "project.id + 1 > 2",
]


@functools.cache
def _ir(text: str) -> Expr:
    return parse_expression(text)


def _condition(rng: random.Random) -> Expr | None:
    if rng.random() < 0.03:
        return None  # always matches
    parts = []
    for _ in range(rng.choice((1, 2, 2, 3))):
        parts.append(rng.choice(KEYED) if rng.random() < 0.65 else rng.choice(OTHER))
    node = _ir(parts[0])
    for text in parts[1:]:
        node = Binary(op="and", left=node, right=_ir(text))
    if rng.random() < 0.05:
        node = Binary(op="or", left=node, right=_ir(rng.choice(KEYED)))
    return node


# The equality keys alone (no regex): a policy of only such rules is one PolicyIndex skips.
EQ_KEYED = [k for k in KEYED if ".matches(" not in k]


def _keyed_condition(rng: random.Random) -> Expr:
    """An equality key first, then anything (conjuncts that raise included)."""
    node = _ir(rng.choice(EQ_KEYED))
    for _ in range(rng.choice((0, 1, 1, 2))):
        node = Binary(op="and", left=node, right=_ir(rng.choice(KEYED + OTHER)))
    return node


def make_policies(seed: int, total: int, count: int, keyed: float = 0.0) -> list[Policy]:
    """`count` policies of `total` rules in all; a share `keyed` of them (about) have only
    rules keyed on an equality, no scope, no exceptions and no default decision (the
    policies PolicyIndex can skip), unless a rule of theirs draws an `||` or no key."""
    rng = random.Random(seed)
    out = []
    per = max(1, total // count)
    for p in range(count):
        skippable = rng.random() < keyed
        rules = []
        for r in range(per):
            decision = rng.choice(["allow", "deny", "warn", "modify", "deny"])
            rules.append(
                Rule(
                    id=f"r{r}",
                    name=f"r{r}",
                    priority=rng.choice((0, 0, 0, 1, 2)),
                    enabled=rng.random() > 0.05,
                    condition_ir=(
                        _keyed_condition(rng)
                        if skippable and rng.random() < 0.99
                        else _condition(rng)
                    ),
                    action=Action(
                        decision=decision,
                        reason=rng.choice([None, f"reason {r}", "model {{ llm.model }}"]),
                        metadata={"k": r} if rng.random() < 0.3 else {},
                        modifications={"llm.max_tokens": r} if decision == "modify" else {},
                    ),
                    obligations=(AuditObligation(),) if rng.random() < 0.2 else (),
                )
            )
        exceptions = tuple(
            PolicyException(id=f"e{e}", name=f"e{e}", condition_ir=_condition(rng))
            for e in range(0 if skippable else rng.choice((0, 0, 1, 2)))
        )
        out.append(
            Policy(
                metadata=PolicyMetadata(id=f"p{p}", name=f"p{p}", priority=rng.choice((0, 1))),
                status=PolicyStatus.DRAFT if rng.random() < 0.15 else PolicyStatus.ACTIVE,
                config=PolicyConfig(
                    default_decision="none"
                    if skippable
                    else rng.choice(["none", "none", "allow", "deny"]),
                    fail_open=rng.random() < 0.3,
                ),
                scope_ir=_ir(rng.choice(OTHER + KEYED))
                if not skippable and rng.random() < 0.15
                else None,
                rules=tuple(rules),
                exceptions=exceptions,
                digest=f"d{p}",
            )
        )
    return out


def make_context(rng: random.Random) -> dict[str, Any]:
    odd: list[Any] = [None, 5, 3.0, True, ["m1"], {"a": 1}, ""]
    ctx: dict[str, Any] = {
        "llm": {
            "model": rng.choice([f"m{k}" for k in range(10)] + odd),
            "prompt": rng.choice(["abbbc", "xa1", "b", "ab", "zzz", "42", 7, None, ["a"]]),
            "max_tokens": rng.choice([10, 500, "big", None]),
        },
        "team": {
            "id": rng.choice(["t0", "t1", "t2", "t4", 3, 3.0, True, 1, None, ["t1"], {}]),
            "tier": rng.choice(["free", "pro", 1, None]),
        },
        "project": {"id": rng.choice([1, 2, 2.0, 2.5, "1", True, None])},
        "user": {"permissions": rng.choice([[], ["x.y"], ["x.*"], "x.y"])},
    }
    for section in ("llm", "team", "project", "user"):
        if rng.random() < 0.05:
            del ctx[section]
        elif rng.random() < 0.03:
            ctx[section] = rng.choice([None, "s", 4])
    return ctx


def _untimed(decision: Any) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(decision)
    out.pop("evaluation_time_ms")
    if out["shadow"] is not None:
        out["shadow"].pop("evaluation_time_ms")
    return out


def _assert_agree(policies: list[Policy], ctx_seed: int) -> None:
    """The indexed engine decides 25 drawn contexts as the unindexed one, traced or not,
    and its traced closures decide like its generated code."""
    indexed, plain = engines(policies)
    rng = random.Random(ctx_seed)
    for _ in range(25):
        ctx = make_context(rng)
        expected = _untimed(plain.evaluate(ctx, now=1000.0))
        assert _untimed(indexed.evaluate(ctx, now=1000.0)) == expected
        traced = _untimed(indexed.evaluate(ctx, now=1000.0, trace=True))
        assert traced == _untimed(plain.evaluate(ctx, now=1000.0, trace=True))
        traced.pop("trace")
        if traced["shadow"] is not None:
            traced["shadow"].pop("trace")
        expected.pop("trace")
        if expected["shadow"] is not None:
            expected["shadow"].pop("trace")
        assert traced == expected


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.integers(0, 2**32),
    st.sampled_from([1, 20, 70, 300, 2000]),
    st.sampled_from([1, 1, 2, 3]),
    st.integers(0, 2**32),
)
def test_indexed_and_unindexed_evaluation_agree(
    seed: int, total: int, count: int, ctx_seed: int
) -> None:
    _assert_agree(make_policies(seed, total, count), ctx_seed)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.integers(0, 2**32),
    st.sampled_from([200, 700, 2000]),
    st.sampled_from([4, 10, 40, 100]),
    st.sampled_from([0.5, 0.9, 1.0]),
    st.integers(0, 2**32),
)
def test_skipping_policies_that_cannot_match_changes_no_decision(
    seed: int, total: int, count: int, keyed: float, ctx_seed: int
) -> None:
    """Many policies, most of them keyed only: the engine with PolicyIndex against the one
    running every rule of every policy, decisions and traces."""
    _assert_agree(make_policies(seed, total, count, keyed=keyed), ctx_seed)


def _team_policy(i: int, team: Any) -> Policy:
    rules = tuple(
        Rule(
            id=f"r{k}",
            name=f"r{k}",
            condition_ir=Binary(
                op="and",
                left=Binary(op="==", left=_ir("team.id"), right=Lit(value=team)),
                right=_ir(f"llm.max_tokens > {k}"),
            ),
            action=Action(decision="deny", reason=f"p{i} r{k}"),
        )
        for k in range(70)
    )
    return Policy(metadata=PolicyMetadata(id=f"p{i}", name=f"p{i}"), rules=rules, digest=f"d{i}")


def test_the_policy_index_runs_only_the_policies_a_request_can_match() -> None:
    """Not a vacuous pass: 20 keyed policies, one erroring candidate, equal keys of
    different types (1, 1.0, true), and a policy that cannot be skipped."""
    policies = [_team_policy(i, f"t{i}") for i in range(18)]
    policies.append(_team_policy(18, 1))  # team.id == 1: also found by 1.0 and true
    fallback = Policy(
        metadata=PolicyMetadata(id="zz", name="zz"),
        config=PolicyConfig(default_decision="warn"),  # a default: never skipped
        rules=_team_policy(19, "t3").rules,
        digest="dz",
    )
    engine = PolicyEngine([*policies, fallback])
    index = engine._everything._index
    assert index is not None
    ids = [p.policy_id for p in index.policies_for({"team": {"id": "t3"}})]
    assert ids == ["p3", "zz"]
    assert [p.policy_id for p in index.policies_for({"team": {"id": "nobody"}})] == ["zz"]
    assert [p.policy_id for p in index.policies_for({"team": {"id": ["t3"]}})] == ["zz"]
    for one in (1, 1.0, True):
        assert [p.policy_id for p in index.policies_for({"team": {"id": one}})] == ["p18", "zz"]
    decision = engine.evaluate({"team": {"id": "t3"}, "llm": {"max_tokens": "x"}})
    assert {e.policy for e in decision.errors} == {"p3", "zz"}  # the candidate ran and raised
    assert engine.evaluate({"team": {"id": True}, "llm": {"max_tokens": 99}}).decision == "warn"
    assert engine.evaluate({"team": {"id": 1.0}, "llm": {"max_tokens": 99}}).decision == "deny"
    traced = engine.evaluate({"team": {"id": "t5"}, "llm": {"max_tokens": 0}}, trace=True)
    assert {t.policy for t in traced.trace} >= {"p0", "p5", "p17", "zz"}  # trace runs them all


def test_the_index_skips_rules_and_runs_erroring_ones() -> None:
    """Not a vacuous pass: a large policy is indexed, most rules are never run, and a rule
    whose regex conjunct raises on a number is still run and records its error."""
    rules = [
        Rule(
            id=f"r{i}",
            name=f"r{i}",
            condition_ir=_ir(f'team.id == "t{i}" && llm.max_tokens > 10'),
            action=Action(decision="deny", reason=f"r{i}"),
        )
        for i in range(200)
    ]
    rules.append(
        Rule(
            id="rx",
            name="rx",
            condition_ir=_ir('llm.prompt.matches("a") && team.id == "t3"'),
            action=Action(decision="warn"),
        )
    )
    policy = Policy(metadata=PolicyMetadata(id="big", name="big"), rules=tuple(rules), digest="d")
    engine = PolicyEngine([policy])
    compiled = engine._compiled.policies[0]
    assert compiled.run is not None
    assert compiled.run.__qualname__.startswith("_runner")
    decision = engine.evaluate({"team": {"id": "t3"}, "llm": {"max_tokens": 50, "prompt": 7}})
    assert decision.matched_rules == ("big/r3", "big/rx")  # the error's deny, in rule order
    assert [e.rule for e in decision.errors] == ["rx"]
    # max_tokens a string: only the candidate rule r5 runs (and raises); the other 199 do not.
    decision = engine.evaluate({"team": {"id": "t5"}, "llm": {"max_tokens": "x", "prompt": "b"}})
    assert [e.rule for e in decision.errors] == ["r5"]


@pytest.mark.parametrize("seed", range(3))
def test_rule_functions_are_shared_between_rules_of_one_shape(seed: int) -> None:
    from policy_core.compiler.codegen import generate_rule_units
    from policy_core.compiler.compiled import CompiledRule
    from policy_core.compiler.context import CompileContext
    from policy_core.compiler.regex import RegexTable

    rng = random.Random(seed)
    caps = [rng.randrange(1, 10**6) for _ in range(50)]
    rules = tuple(
        CompiledRule(
            qualified=f"p/r{i}",
            rule_id=f"r{i}",
            decision="deny",
            strength=3,
            condition=None,
            ir=_ir(f'project.id == "p-{i}" && llm.max_tokens > {cap}'),
            reason=None,
            modifications={},
            metadata={},
            obligations=(),
        )
        for i, cap in enumerate(caps)
    )
    units = generate_rule_units(rules, CompileContext(RegexTable()))
    assert units is not None
    assert len({id(function) for function, _ in units}) == 1
    assert units[7][1][0] is rules[7]  # each rule's own constants: the rule, its literals
    assert "p-7" in units[7][1]


def _policy_text(pid: str, rules: int, cap: int, status: str = "active") -> str:
    body = "\n".join(
        f"  - id: r{i}\n    condition: 'team.id == \"t{i}\" && llm.max_tokens > {cap}'\n"
        f"    action: {{decision: deny, reason: '{pid} r{i}'}}"
        for i in range(rules)
    )
    return f"metadata: {{id: {pid}}}\nstatus: {status}\nrules:\n{body}\n"


def test_an_engine_built_with_reuse_compiles_only_the_changed_policies() -> None:
    from policy_core import load_policy_text

    texts = {f"p{k}": _policy_text(f"p{k}", 80, 100 * k) for k in range(5)}
    first = [p for t in texts.values() for p in load_policy_text(t)]
    old = PolicyEngine(first)
    texts["p2"] = _policy_text("p2", 80, 7)  # a new revision
    texts["p3"] = _policy_text("p3", 80, 300, status="draft")  # same rules, another status
    second = [p for t in texts.values() for p in load_policy_text(t)]  # new objects, all
    new = PolicyEngine(second, reuse=old)
    before = {p.policy_id: p for p in old._compiled.policies}
    after = {p.policy_id: p for p in new._compiled.policies}
    for pid in ("p0", "p1", "p4"):
        assert after[pid].run is before[pid].run  # taken as it was: the index too
        assert after[pid].policy is next(p for p in second if p.id == pid)  # rebound
    for pid in ("p2", "p3"):
        assert after[pid].run is not before[pid].run
    scratch = PolicyEngine(second)
    rng = random.Random(5)
    for _ in range(200):
        ctx = {"team": {"id": f"t{rng.randrange(90)}"}, "llm": {"max_tokens": rng.randrange(500)}}
        assert _untimed(new.evaluate(ctx)) == _untimed(scratch.evaluate(ctx))
    # The old engine still decides with the old policies.
    ctx = {"team": {"id": "t1"}, "llm": {"max_tokens": 50}}
    assert old.evaluate(ctx).matched_rules == ("p0/r1",)
    assert new.evaluate(ctx).matched_rules == ("p0/r1", "p2/r1")


def test_policies_without_a_digest_are_never_reused() -> None:
    rule = Rule(
        id="r", name="r", condition_ir=_ir('team.id == "a"'), action=Action(decision="deny")
    )
    policy = Policy(metadata=PolicyMetadata(id="p", name="p"), rules=(rule,))
    old = PolicyEngine([policy])
    changed = msgspec.structs.replace(
        policy, rules=(msgspec.structs.replace(rule, condition_ir=_ir('team.id == "b"')),)
    )
    new = PolicyEngine([changed], reuse=old)
    assert new.evaluate({"team": {"id": "b"}}).decision == "deny"
    assert new.evaluate({"team": {"id": "a"}}).decision == "allow"
