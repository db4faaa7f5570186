"""The two fuzz targets, shared by the atheris harness (reliability/fuzz.py) and the pytest
replay of the committed corpus (tests/test_fuzz_regressions.py).

Each target takes raw bytes and raises `FuzzFinding` when the code under test broke its
contract; any other exception escaping is a finding too (atheris reports it as a crash).

- expression: `parse_expression` returns an expression or raises `ExprSyntaxError`, nothing
  else; what it returns prints (`to_expression`) to a text that parses again.
- loader: `load_policy_text` / `validate_policy_text` return policies or raise
  `PolicyLoadError`, nothing else (the contract the HTTP and gRPC APIs rely on for a 422).
"""

from __future__ import annotations

from policy_core import PolicyLoadError, load_policy_text, to_expression, validate_policy_text
from policy_core.language.conditions import check_regex
from policy_core.syntax.lexer import ExprSyntaxError
from policy_core.syntax.parser import parse_expression

MAX_INPUT = 64 * 1024


class FuzzFinding(AssertionError):
    """The code under test raised or returned something its contract does not allow."""


def _text(data: bytes) -> str:
    # The APIs hand the core decoded text; invalid UTF-8 never reaches it (refused as 400).
    return data[:MAX_INPUT].decode("utf-8", errors="replace")


def expression(data: bytes) -> None:
    text = _text(data)
    try:
        expr = parse_expression(text, check_regex=check_regex)
    except ExprSyntaxError:
        return
    printed = to_expression(expr)
    try:
        parse_expression(printed, check_regex=check_regex)
    except ExprSyntaxError as exc:
        raise FuzzFinding(f"{text!r} printed as {printed!r}, which does not parse: {exc}") from exc


def loader(data: bytes) -> None:
    text = _text(data)
    try:
        load_policy_text(text, file="<fuzz>")
    except PolicyLoadError:
        return
    try:
        validate_policy_text(text, file="<fuzz>")
    except PolicyLoadError as exc:
        raise FuzzFinding(f"load accepted {text!r} but validate refused it: {exc}") from exc


TARGETS = {"expression": expression, "loader": loader}
