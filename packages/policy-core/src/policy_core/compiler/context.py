"""What the closure compiler and the code generator share while compiling: types, no logic.

`Fn` is a compiled closure, `FactCall` a stateful or integration fact a policy
references, and `CompileContext` what compiling a policy set learns. expr.py,
methods.py and codegen.py all import them from here, so none of them has to
import another for a type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from policy_core.compiler.regex import RegexTable
from policy_core.compiler.runtime import Env

__all__ = ["CompileContext", "FactCall", "Fn"]

Fn = Callable[[Env], Any]


class FactCall(msgspec.Struct, frozen=True):
    """A stateful or integration fact referenced by a policy, with its compiled arguments."""

    name: str
    args: tuple[Fn, ...]


class CompileContext:
    """What compiling a policy set learns: facts it needs, regexes, use of now()."""

    def __init__(self, regexes: RegexTable) -> None:
        self.regexes = regexes
        self.derived: set[str] = set()
        self.fact_calls: list[FactCall] = []
        self.uses_now = False
