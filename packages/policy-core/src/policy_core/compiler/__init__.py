"""IR -> compiled closures; see passes.py for the ordered list of passes."""

from policy_core.compiler.compiled import CompiledPolicy, CompiledRule, CompiledSet
from policy_core.compiler.passes import PASSES, compile_policies, compile_policy

__all__ = [
    "PASSES",
    "CompiledPolicy",
    "CompiledRule",
    "CompiledSet",
    "compile_policies",
    "compile_policy",
]
