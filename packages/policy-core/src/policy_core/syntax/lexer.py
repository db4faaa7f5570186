"""Tokenizer of the expression language; every token carries its character offset.

`tokenize` is the fast copy of `tokenize_slow` (the character-by-character
definition): the common tokens take one regex match each. The parity test is
packages/policy-core/tests/test_core_expression_parser.py::test_fast_tokenizer_equals_slow.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

__all__ = ["ExprSyntaxError", "Token", "tokenize", "tokenize_slow"]

KEYWORDS = frozenset({"true", "false", "null", "and", "or", "not", "in"})
_TWO_CHAR = frozenset({"==", "!=", "<=", ">=", "&&", "||"})
_ONE_CHAR = frozenset("<>!+-*/%()[]{}.,:")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}


class ExprSyntaxError(Exception):
    """A syntax (or static) error at `offset` characters into the expression text."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


class Token(NamedTuple):
    kind: str  # "num" | "str" | "ident" | "kw" | "op" | "eof"
    value: Any
    offset: int


# The common tokens in one regex match each: whitespace, ASCII names, operators,
# ASCII numbers followed by neither a word character nor a dot, and strings without
# a backslash. Anything else (escapes, non-ASCII names and digits, errors) takes the
# character-by-character branch of `_slow_token`.
_FAST_TOKEN = re.compile(
    r"(?P<ws>[ \t\r\n]+)"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<int>[0-9]+)(?![\w.])"
    r"|(?P<float>[0-9]+(?:\.[0-9]+(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+))(?![\w.])"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||[<>!+\-*/%()\[\]{}.,:])"
    r'|"(?P<dq>[^"\\]*)"'
    r"|'(?P<sq>[^'\\]*)'"
).match


# The same tokens, each with the whitespace before it, for one `findall` over a whole text.
_ALL_TOKENS = re.compile(
    r"([ \t\r\n]*)(?:"
    r"([A-Za-z_][A-Za-z0-9_]*)"
    r"|(==|!=|<=|>=|&&|\|\||[<>!+\-*/%()\[\]{}.,:])"
    r'|("[^"\\]*"|'
    r"'[^'\\]*')"
    r"|([0-9]+)(?![\w.])"
    r"|([0-9]+(?:\.[0-9]+(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+))(?![\w.])"
    r")"
).findall


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`, ending with an `eof` token; ExprSyntaxError at the first bad one.

    A fast copy of `tokenize_slow`. First one `findall` of the common tokens over
    the whole text, offsets counted from the lengths of what matched; if that
    skipped anything (a character none of them starts), `_tokenize_stepwise`:
    each token the regex `_FAST_TOKEN` recognises is the one `_slow_token` would
    make at that offset, and everything else goes to `_slow_token` itself (see
    the module docstring for the parity test).
    """
    tokens: list[Token] = []
    append = tokens.append
    make = tuple.__new__  # Token(...) without the Python-level __new__ of a NamedTuple
    pos = 0
    for space, word, op, string, integer, real in _ALL_TOKENS(text):
        if space:
            pos += len(space)
        if word:
            append(make(Token, ("kw" if word in KEYWORDS else "ident", word, pos)))
            pos += len(word)
        elif op:
            append(make(Token, ("op", op, pos)))
            pos += len(op)
        elif string:
            append(make(Token, ("str", string[1:-1], pos)))
            pos += len(string)
        elif integer:
            append(make(Token, ("num", int(integer), pos)))
            pos += len(integer)
        else:
            append(make(Token, ("num", float(real), pos)))
            pos += len(real)
    # Matches are contiguous exactly when their lengths add up to the text (but for
    # trailing whitespace): a skipped character leaves a token character after `pos`.
    if pos != len(text) and text[pos:].strip(" \t\r\n"):
        return _tokenize_stepwise(text)
    append(make(Token, ("eof", None, len(text))))
    return tokens


def _tokenize_stepwise(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    fast = _FAST_TOKEN
    append = tokens.append
    make = tuple.__new__  # Token(...) without the Python-level __new__ of a NamedTuple
    while i < n:
        m = fast(text, i)
        if m is None:
            i = _slow_token(text, i, n, tokens)
            continue
        kind = m.lastgroup
        if kind == "ident":
            word = m.group()
            append(make(Token, ("kw" if word in KEYWORDS else "ident", word, i)))
        elif kind == "op":
            append(make(Token, ("op", m.group(), i)))
        elif kind == "int":
            append(make(Token, ("num", int(m.group()), i)))
        elif kind == "float":
            append(make(Token, ("num", float(m.group()), i)))
        elif kind == "dq" or kind == "sq":
            append(make(Token, ("str", m.group(kind), i)))
        elif kind != "ws":  # pragma: no cover - the regex has no other group
            raise AssertionError(kind)
        i = m.end()
    tokens.append(Token("eof", None, n))
    return tokens


def tokenize_slow(text: str) -> list[Token]:
    """The definition of `tokenize`, one character at a time (kept for the test pinning them)."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        i = _slow_token(text, i, n, tokens)
    tokens.append(Token("eof", None, n))
    return tokens


def _slow_token(text: str, i: int, n: int, tokens: list[Token]) -> int:
    """Skip the whitespace character or read the token at `i`; the offset after it."""
    c = text[i]
    if c in " \t\r\n":
        return i + 1
    if c.isdigit():
        return _number(text, i, tokens)
    if c == "'" or c == '"':
        return _string(text, i, tokens)
    if c.isalpha() or c == "_":
        j = i + 1
        while j < n and (text[j].isalnum() or text[j] == "_") and text[j].isascii():
            j += 1
        word = text[i:j]
        tokens.append(Token("kw" if word in KEYWORDS else "ident", word, i))
        return j
    if text[i : i + 2] in _TWO_CHAR:
        tokens.append(Token("op", text[i : i + 2], i))
        return i + 2
    if c in _ONE_CHAR:
        tokens.append(Token("op", c, i))
        return i + 1
    if c in "&|=":
        raise ExprSyntaxError(i, f"unexpected {c!r}; did you mean {c * 2!r}?")
    raise ExprSyntaxError(i, f"unexpected character {c!r}")


def _number(text: str, i: int, out: list[Token]) -> int:
    n, j = len(text), i
    while j < n and text[j].isdigit():
        j += 1
    is_float = False
    if j + 1 < n and text[j] == "." and text[j + 1].isdigit():
        is_float = True
        j += 1
        while j < n and text[j].isdigit():
            j += 1
    if j < n and text[j] in "eE":
        k = j + 1
        if k < n and text[k] in "+-":
            k += 1
        if k < n and text[k].isdigit():
            is_float = True
            j = k
            while j < n and text[j].isdigit():
                j += 1
    if j < n and (text[j].isalpha() or text[j] == "_"):
        raise ExprSyntaxError(j, f"invalid number {text[i : j + 1]!r}")
    raw = text[i:j]
    out.append(Token("num", float(raw) if is_float else int(raw), i))
    return j


def _string(text: str, i: int, out: list[Token]) -> int:
    quote, n, j = text[i], len(text), i + 1
    parts: list[str] = []
    while True:
        if j >= n:
            raise ExprSyntaxError(i, "unterminated string")
        c = text[j]
        if c == quote:
            break
        if c == "\\" and j + 1 < n:
            e = text[j + 1]
            if e in _ESCAPES:
                parts.append(_ESCAPES[e])
                j += 2
                continue
            if e == "u":
                digits = text[j + 2 : j + 6]
                if len(digits) != 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                    raise ExprSyntaxError(j, "\\u must be followed by four hex digits")
                parts.append(chr(int(digits, 16)))
                j += 6
                continue
            # Any other sequence is kept as written, so regexes need no doubling.
            parts.append(c)
            j += 1
            continue
        parts.append(c)
        j += 1
    out.append(Token("str", "".join(parts), i))
    return j + 1
