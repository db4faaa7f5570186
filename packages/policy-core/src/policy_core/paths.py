"""Context paths: parse `a.b[0]['x-y']["k"]` into segments and look them up.

The syntax is the path subset of the expression language (policy-language.md
4.1 and 4.2): a root identifier, then any number of `.name`, `[int]` and
`['key']` / `["key"]` segments, without whitespace. Lookup never raises: a
path that does not exist is `None`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["PathSegment", "format_path", "get_path", "parse_path"]

PathSegment = str | int

_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT_REST = _IDENT_START | frozenset("0123456789")
_DIGITS = frozenset("0123456789")
# The escapes of string literals (4.1); any other backslash sequence is kept as written.
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}
_HEX = frozenset("0123456789abcdefABCDEF")


def _fail(text: str, pos: int, expected: str) -> ValueError:
    found = repr(text[pos]) if pos < len(text) else "end of path"
    return ValueError(
        f"invalid path {text!r}: expected {expected} at position {pos}, found {found}"
    )


def _ident(text: str, pos: int) -> int:
    """Return the end of the identifier starting at `pos` (which must start one)."""
    if pos >= len(text) or text[pos] not in _IDENT_START:
        raise _fail(text, pos, "a name")
    end = pos + 1
    while end < len(text) and text[end] in _IDENT_REST:
        end += 1
    return end


def _quoted(text: str, pos: int) -> tuple[str, int]:
    """Parse a quoted key starting at the quote at `pos`; return it and the end."""
    quote = text[pos]
    out: list[str] = []
    i = pos + 1
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt == "u":
                digits = text[i + 2 : i + 6]
                if len(digits) != 4 or not all(c in _HEX for c in digits):
                    raise _fail(text, i, "four hex digits after \\u")
                out.append(chr(int(digits, 16)))
                i += 6
                continue
        out.append(ch)
        i += 1
    raise _fail(text, len(text), f"a closing {quote}")


def _index(text: str, pos: int) -> tuple[int, int]:
    """Parse an integer index starting at `pos`; return it and the end."""
    end = pos + 1 if pos < len(text) and text[pos] == "-" else pos
    start_digits = end
    while end < len(text) and text[end] in _DIGITS:
        end += 1
    if end == start_digits:
        raise _fail(text, start_digits, "an integer or a quoted key")
    return int(text[pos:end]), end


def parse_path(text: str) -> tuple[PathSegment, ...]:
    """Parse a context path into its segments, root first.

    `a.b[0]['x-y']["k"]` gives `("a", "b", 0, "x-y", "k")`. Raises `ValueError`
    naming the (0-based) character position of the first problem.
    """
    end = _ident(text, 0)
    segments: list[PathSegment] = [text[:end]]
    pos = end
    while pos < len(text):
        ch = text[pos]
        if ch == ".":
            end = _ident(text, pos + 1)
            segments.append(text[pos + 1 : end])
        elif ch == "[":
            seg: PathSegment
            if pos + 1 < len(text) and text[pos + 1] in "'\"":
                seg, end = _quoted(text, pos + 1)
            else:
                seg, end = _index(text, pos + 1)
            if end >= len(text) or text[end] != "]":
                raise _fail(text, end, "']'")
            segments.append(seg)
            end += 1
        else:
            raise _fail(text, pos, "'.' or '['")
        pos = end
    return tuple(segments)


def _is_ident(name: str) -> bool:
    return bool(name) and name[0] in _IDENT_START and all(c in _IDENT_REST for c in name)


def _quote(key: str) -> str:
    body = key.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\t", "\\t")
    return f"['{body}']"


def format_path(segments: Iterable[PathSegment]) -> str:
    """The inverse of `parse_path`: names as `.name` where possible, else `['key']`.

    The root must be an identifier (a path cannot start with a bracket).
    """
    parts: list[str] = []
    for n, seg in enumerate(segments):
        if isinstance(seg, int) and not isinstance(seg, bool):
            if n == 0:
                raise ValueError("a path cannot start with an index")
            parts.append(f"[{seg}]")
        elif isinstance(seg, str) and _is_ident(seg):
            parts.append(seg if n == 0 else f".{seg}")
        elif isinstance(seg, str) and n > 0:
            parts.append(_quote(seg))
        else:
            raise ValueError(f"a path must start with a name, not {seg!r}")
    if not parts:
        raise ValueError("a path has at least one segment")
    return "".join(parts)


def get_path(obj: Any, segments: Iterable[PathSegment]) -> Any:
    """Look a path up in `obj` (the context); `None` when it does not exist.

    A name segment needs a map; an index segment needs a list and a non-bool
    int in `0 <= i < len`. Anything else (a missing key, a string indexed, a
    negative index) gives `None`, never an error (policy-language.md 4.2).
    """
    cur = obj
    for seg in segments:
        if isinstance(seg, str):
            if not isinstance(cur, Mapping):
                return None
            cur = cur.get(seg)
        elif isinstance(seg, int) and not isinstance(seg, bool):
            if not isinstance(cur, list) or not 0 <= seg < len(cur):
                return None
            cur = cur[seg]
        else:
            return None
        if cur is None:
            return None
    return cur
