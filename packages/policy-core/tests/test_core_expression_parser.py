"""Parser, printer and lexer: precedence, literals, escapes, positions of errors."""

from __future__ import annotations

import pytest
from policy_core.ir import Binary, Call, Index, ListExpr, Lit, MapExpr, Method, Neg, Not, Path
from policy_core.language import ExprSyntaxError, parse_expression, to_expression


def test_precedence_follows_the_spec_table() -> None:
    assert parse_expression("a || b && c") == Binary(
        op="or",
        left=Path(root="a"),
        right=Binary(op="and", left=Path(root="b"), right=Path(root="c")),
    )
    assert parse_expression("!a == b") == Not(
        operand=Binary(op="==", left=Path(root="a"), right=Path(root="b"))
    )
    assert parse_expression("not a in b") == parse_expression("!(a in b)")
    assert parse_expression("1 + 2 * 3") == Binary(
        op="+", left=Lit(value=1), right=Binary(op="*", left=Lit(value=2), right=Lit(value=3))
    )
    assert parse_expression("-a.b") == Neg(operand=Path(root="a", segments=("b",)))
    assert parse_expression("a - b - c") == Binary(
        op="-", left=Binary(op="-", left=Path(root="a"), right=Path(root="b")), right=Path(root="c")
    )


def test_word_and_symbol_operators_are_the_same() -> None:
    assert parse_expression("a and b or not c") == parse_expression("a && b || !c")
    assert parse_expression("x not in [1]") == Binary(
        op="not in", left=Path(root="x"), right=ListExpr(items=(Lit(value=1),))
    )


def test_paths_and_indexes() -> None:
    assert parse_expression("a.b[0]['x-y']") == Path(root="a", segments=("b", 0, "x-y"))
    assert parse_expression("a['b']") == parse_expression("a.b")
    assert parse_expression("a[-1]") == Path(root="a", segments=(-1,))
    assert parse_expression("a[b]") == Index(target=Path(root="a"), index=Path(root="b"))


def test_literals_and_escapes() -> None:
    assert parse_expression("'it\\'s'") == Lit(value="it's")
    assert parse_expression('"a\\nb\\t\\u0041"') == Lit(value="a\nb\tA")
    # Any other backslash sequence is kept, so regexes need no doubling.
    assert parse_expression(r"'\d+\s'") == Lit(value="\\d+\\s")
    assert parse_expression("-2.5e3") == Lit(value=-2500.0)
    assert parse_expression("[1, 'a', null, true]") == ListExpr(
        items=(Lit(value=1), Lit(value="a"), Lit(value=None), Lit(value=True))
    )
    assert parse_expression("{'k': 1}") == MapExpr(keys=("k",), values=(Lit(value=1),))


def test_calls_methods_and_facts() -> None:
    assert parse_expression("size(x)") == Call(name="size", args=(Path(root="x"),))
    assert parse_expression("user.has_role('a')") == Method(
        target=Path(root="user"), name="has_role", args=(Lit(value="a"),)
    )
    assert parse_expression("rate_limit.count(user.id, '1m')") == Call(
        name="rate_limit.count", args=(Path(root="user", segments=("id",)), Lit(value="1m"))
    )


@pytest.mark.parametrize(
    ("text", "offset", "fragment"),
    [
        ("a < b < c", 6, "do not chain"),
        ("a == ", 5, "unexpected end"),
        ("foo(1)", 0, "unknown function 'foo'"),
        ("x.bar()", 2, "unknown method 'bar'"),
        ("size(1, 2)", 0, "takes 1 argument"),
        ("'abc", 0, "unterminated string"),
        ("a & b", 2, "did you mean '&&'"),
        ("a $ b", 2, "unexpected character"),
        ("x.matches('(')", 10, "invalid regular expression"),
        ("rate_limit.nope(1)", 11, "unknown function 'rate_limit.nope'"),
        ("(a", 2, "expected ')'"),
    ],
)
def test_syntax_errors_point_at_the_offending_character(
    text: str, offset: int, fragment: str
) -> None:
    from policy_core.compiler.regex import check_regex

    with pytest.raises(ExprSyntaxError) as info:
        parse_expression(text, check_regex=check_regex)
    assert info.value.offset == offset
    assert fragment in info.value.message


@pytest.mark.parametrize(
    "text",
    [
        "a.b[0]['x-y'] == 1 && !c || d not in [1, 2]",
        "(a < b) == c",
        "a - (b - c)",
        "-(a * b)",
        "!(a && b)",
        "(!a) == b",
        "{'k': [1, 2.5, 'x']}['k']",
        "user.has_permission('x.*') && llm.prompt.matches('\\\\d+')",
        "a['not']",
    ],
)
def test_printer_round_trips(text: str) -> None:
    expr = parse_expression(text)
    assert parse_expression(to_expression(expr)) == expr


@pytest.mark.parametrize(
    ("pattern", "shown"),
    [("(a)\\1", "'(a)\\1'"), ("secret(?=key)", "'secret(?=key)'"), ("(", "'('")],
)
def test_invalid_regex_messages_hold_no_python_reprs(pattern: str, shown: str) -> None:
    """Regression (issue 13): RE2's reason came out as `b'invalid escape sequence: \\\\1'`."""
    from policy_core.compiler.regex import check_regex
    from policy_core.errors import EvalError
    from policy_core.regex import search

    text = "x.matches('" + pattern.replace("\\", "\\\\") + "')"
    with pytest.raises(ExprSyntaxError) as info:
        parse_expression(text, check_regex=check_regex)
    message = info.value.message
    assert message.startswith(f"invalid regular expression {shown}: "), message
    assert "b'" not in message
    assert 'b"' not in message
    assert "\\\\" not in message
    with pytest.raises(EvalError) as raised:
        search(pattern, "aa")
    assert str(raised.value) == message


def test_a_regex_with_a_newline_is_shown_escaped_not_as_a_repr() -> None:
    from policy_core.regex import quote_pattern

    assert quote_pattern("a\nb(") == '"a\\nb("'
    assert quote_pattern("(a)\\1") == "'(a)\\1'"


def _tokens(tokenize: object, text: str) -> object:
    try:
        return ("ok", tokenize(text))  # type: ignore[operator]
    except ExprSyntaxError as exc:
        return ("error", exc.offset, exc.message)
    except Exception as exc:  # the same failure either way, whatever it is
        return ("raised", type(exc).__name__, str(exc))


def test_fast_tokenizer_equals_slow() -> None:
    """lexer.tokenize (one regex match per common token) is lexer.tokenize_slow's fast copy:
    the same tokens, or the same error at the same offset, on the expression fuzz corpus,
    the conditions of the examples and seeded random texts over the characters that
    decide a token's end (digits of other scripts, dots, exponents, quotes, escapes)."""
    import random
    from pathlib import Path as FsPath

    from policy_core.syntax.lexer import tokenize, tokenize_slow

    root = FsPath(__file__).resolve().parents[3]
    texts = [
        p.read_bytes().decode("utf-8", "replace")
        for p in sorted((root / "reliability" / "corpus" / "expression").iterdir())
    ]
    for path in sorted((root / "examples" / "policies").glob("*.yaml")):
        texts += [line.split(":", 1)[1] for line in path.read_text().splitlines() if ":" in line]
    rng = random.Random(16)
    alphabet = [*"ab_Z019.eE+-\"'\\ \t\n([{}])!=&|<>,:%*/", "٣", "²", "é", "in", "u00e9"]
    texts += [
        "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 14))) for _ in range(20_000)
    ]
    texts += ["1.5e3", "1e", "1.x", "12.5.3", "007", "1_0", "x1.2", "a.0.b", "'a\\'b'", '"\\u00e9"']
    mismatches = [t for t in texts if _tokens(tokenize, t) != _tokens(tokenize_slow, t)]
    assert mismatches == []
    assert sum(_tokens(tokenize, t)[0] == "ok" for t in texts) > 5_000
