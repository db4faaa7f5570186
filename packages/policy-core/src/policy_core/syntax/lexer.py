"""Tokenizer of the expression language; every token carries its character offset."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["ExprSyntaxError", "Token", "tokenize"]

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


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c.isdigit():
            i = _number(text, i, tokens)
        elif c == "'" or c == '"':
            i = _string(text, i, tokens)
        elif c.isalpha() or c == "_":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_") and text[j].isascii():
                j += 1
            word = text[i:j]
            tokens.append(Token("kw" if word in KEYWORDS else "ident", word, i))
            i = j
        elif text[i : i + 2] in _TWO_CHAR:
            tokens.append(Token("op", text[i : i + 2], i))
            i += 2
        elif c in _ONE_CHAR:
            tokens.append(Token("op", c, i))
            i += 1
        elif c in "&|=":
            raise ExprSyntaxError(i, f"unexpected {c!r}; did you mean {c * 2!r}?")
        else:
            raise ExprSyntaxError(i, f"unexpected character {c!r}")
    tokens.append(Token("eof", None, n))
    return tokens


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
