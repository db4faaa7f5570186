"""Replays the fuzzing corpus and every crash reproducer (reliability/fuzz.py) as regression cases.

The inputs are the ones atheris kept for coverage (reliability/corpus/<target>/) and the
ones that once broke a contract (reliability/crashes/<target>/, fixed since): the
expression parser raises only ExprSyntaxError and prints back what it parsed; the policy
loader raises only PolicyLoadError.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RELIABILITY = ROOT / "reliability"
sys.path.insert(0, str(RELIABILITY))

import fuzz_targets  # noqa: E402

CASES = sorted(
    p
    for kind in ("corpus", "crashes")
    for p in (RELIABILITY / kind).glob("*/*")
    if p.is_file() and p.parent.name in fuzz_targets.TARGETS
)


def test_there_are_cases_for_both_targets() -> None:
    targets = {p.parent.name for p in CASES}
    assert targets == set(fuzz_targets.TARGETS)
    assert any(p.parent.parent.name == "crashes" for p in CASES)


def _target(path: Path) -> Callable[[bytes], None]:
    return fuzz_targets.TARGETS[path.parent.name]


@pytest.mark.parametrize(
    "case", CASES, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name[:16]}"
)
def test_the_case_keeps_the_contract(case: Path) -> None:
    _target(case)(case.read_bytes())  # raises FuzzFinding (or anything else) on a regression


def test_a_long_chain_of_unary_minus_prints_back_within_the_nesting_limit() -> None:
    """The first fuzzing find: `-(-(-...))` added a nesting level per sign."""
    fuzz_targets.expression(b"a - " + b"-" * 300 + b"b")
    from policy_core import parse_expression, to_expression

    assert to_expression(parse_expression("- -x")) == "- -x"
