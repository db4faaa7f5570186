"""Regular expressions (RE2, linear time) and the per-path regex set pass.

Every literal pattern applied to the same static path joins one `re2.Set`,
so a prompt checked by several `matches(...)` rules is scanned once per
evaluation instead of once per rule.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from policy_core.compiler.runtime import Env, EvalError

__all__ = ["RegexTable", "check_regex", "search"]


def _re2() -> Any:
    import re2  # deferred: importing re2 costs ~20 ms, paid only by policies that use regexes

    return re2


def check_regex(pattern: str) -> str | None:
    """None when RE2 accepts the pattern, else the reason."""
    try:
        _compile(pattern)
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return None


@lru_cache(maxsize=1)
def _options() -> Any:
    options = _re2().Options()
    options.log_errors = False  # invalid patterns are reported as load/evaluation errors instead
    return options


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> Any:
    return _re2().compile(pattern, _options())


def search(pattern: str, text: str) -> bool:
    """`text.matches(pattern)` for a pattern computed at run time."""
    try:
        compiled = _compile(pattern)
    except Exception as exc:
        raise EvalError(f"invalid regular expression {pattern!r}: {exc}") from None
    return compiled.search(text) is not None


class RegexTable:
    """Collects (path key, pattern) pairs while compiling, then builds one set per path."""

    def __init__(self) -> None:
        self._patterns: dict[str, list[str]] = {}
        self._sets: dict[str, Any] = {}

    def register(self, path_key: str, pattern: str) -> int:
        patterns = self._patterns.setdefault(path_key, [])
        if pattern not in patterns:
            patterns.append(pattern)
        return patterns.index(pattern)

    def build(self) -> None:
        re2 = _re2()
        for key, patterns in self._patterns.items():
            regex_set = re2.Set.SearchSet(_options())
            for pattern in patterns:
                regex_set.Add(pattern)
            regex_set.Compile()
            self._sets[key] = regex_set._set  # the C++ set: takes UTF-8 bytes, no wrapper cost

    def matches(self, env: Env, path_key: str, text: str) -> frozenset[int]:
        """Indexes of the patterns of `path_key` that match `text`; once per evaluation."""
        memo_key = ("re", path_key)
        found: frozenset[int] | None = env.memo.get(memo_key)
        if found is None:
            if path_key not in self._sets:
                raise EvalError("regex set used before it was built")  # compiler bug guard
            hits = self._sets[path_key].Match(text.encode("utf-8", "surrogatepass"))
            found = env.memo[memo_key] = frozenset(hits) if hits else frozenset()
        return found
