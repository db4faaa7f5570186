"""The per-path regex set pass: every literal pattern on one static path joins one `re2.Set`.

A prompt checked by several `matches(...)` rules is thus scanned once per
evaluation instead of once per rule. Checking a single pattern and matching
one computed at run time live a layer down, in policy_core.regex (the
language checks patterns too); they are named here for the compiler's use.
"""

from __future__ import annotations

from typing import Any

from policy_core.compiler.runtime import Env, EvalError
from policy_core.regex import check_regex, re2_module, re2_options, search

__all__ = ["RegexTable", "check_regex", "search"]


class RegexTable:
    """Collects (path key, pattern) pairs while compiling, then builds one set per path."""

    def __init__(self) -> None:
        self._patterns: dict[str, list[str]] = {}
        self._sets: dict[str, Any] = {}
        # Memo keys of this table's results. Every policy compiles its own table (its own
        # patterns, numbered from 0), and one evaluation's memo is shared by all policies:
        # a key of the path alone would hand one policy's hits to another's patterns.
        self._memo_keys: dict[str, tuple[str, int, str]] = {}

    def register(self, path_key: str, pattern: str) -> int:
        self._memo_keys.setdefault(path_key, ("re", id(self), path_key))
        patterns = self._patterns.setdefault(path_key, [])
        if pattern not in patterns:
            patterns.append(pattern)
        return patterns.index(pattern)

    def build(self) -> None:
        re2 = re2_module()
        for key, patterns in self._patterns.items():
            regex_set = re2.Set.SearchSet(re2_options())
            for pattern in patterns:
                regex_set.Add(pattern)
            regex_set.Compile()
            self._sets[key] = regex_set._set  # the C++ set: takes UTF-8 bytes, no wrapper cost

    def matches(self, env: Env, path_key: str, text: str) -> frozenset[int]:
        """Indexes of the patterns of `path_key` that match `text`; once per evaluation."""
        memo_key = self._memo_keys.get(path_key)
        if memo_key is None or path_key not in self._sets:
            raise EvalError("regex set used before it was built")  # compiler bug guard
        found: frozenset[int] | None = env.memo.get(memo_key)
        if found is None:
            hits = self._sets[path_key].Match(text.encode("utf-8", "surrogatepass"))
            found = env.memo[memo_key] = frozenset(hits) if hits else frozenset()
        return found
