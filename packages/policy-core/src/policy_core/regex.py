"""Regular expressions (RE2, linear time): checking a pattern and matching one computed at run time.

The lowest layer, because both the language (checking the patterns a policy
or a context schema writes) and the compiler (`matches(...)`, the per-path
regex sets of compiler/regex.py) use it.
"""

from __future__ import annotations

from functools import lru_cache
from re import _parser as _sre_parse  # type: ignore[attr-defined]  # CPython 3.11+
from typing import Any

from policy_core.errors import EvalError

__all__ = [
    "check_regex",
    "pattern_reach",
    "quote_pattern",
    "re2_module",
    "re2_options",
    "regex_error_text",
    "search",
]


def re2_module() -> Any:
    import re2  # deferred: importing re2 costs ~20 ms, paid only by policies that use regexes

    return re2


def check_regex(pattern: str) -> str | None:
    """None when RE2 accepts the pattern, else the reason."""
    try:
        _compile(pattern)
    except Exception as exc:
        return regex_error_text(exc)
    return None


def quote_pattern(pattern: str) -> str:
    """A pattern in single quotes as written (no Python repr doubling its backslashes);
    JSON-escaped only when it holds characters that cannot be shown (newlines, controls)."""
    if pattern.isprintable():
        return f"'{pattern}'"
    import json

    return json.dumps(pattern)


def regex_error_text(exc: BaseException) -> str:
    """The reason RE2 gives, as plain text.

    pyre2 raises its error with the reason as *bytes*, so `str(exc)` would
    show a Python repr (`b'invalid escape sequence: \\1'`) to the author.
    """
    parts = []
    for arg in exc.args:
        text = arg.decode("utf-8", "replace") if isinstance(arg, bytes | bytearray) else str(arg)
        if text:
            parts.append(text)
    return "; ".join(parts) or type(exc).__name__


@lru_cache(maxsize=1)
def re2_options() -> Any:
    options = re2_module().Options()
    options.log_errors = False  # invalid patterns are reported as load/evaluation errors instead
    return options


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> Any:
    return re2_module().compile(pattern, re2_options())


def search(pattern: str, text: str) -> bool:
    """`text.matches(pattern)` for a pattern computed at run time."""
    try:
        compiled = _compile(pattern)
    except Exception as exc:
        raise EvalError(
            f"invalid regular expression {quote_pattern(pattern)}: {regex_error_text(exc)}"
        ) from None
    return compiled.search(text) is not None


def pattern_reach(pattern: str) -> int | None:
    """The longest span `pattern` can match, in characters; None when unbounded or unknown."""
    try:
        _, most = _sre_parse.parse(pattern).getwidth()
    except Exception:  # RE2-only syntax: unknown, treated as unbounded
        return None
    return None if most >= _sre_parse.MAXREPEAT else int(most)
