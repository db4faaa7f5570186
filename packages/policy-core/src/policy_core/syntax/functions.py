"""The closed set of functions and methods of the expression language (spec 4.5).

Calling anything else is a load error, so the table is the single place that
says what exists and with how many arguments.
"""

from __future__ import annotations

__all__ = [
    "FACT_FUNCTIONS",
    "GLOBAL_FUNCTIONS",
    "INTEGRATION_FUNCTIONS",
    "INTEGRATION_OF",
    "METHODS",
    "STATEFUL_FUNCTIONS",
]

# name -> (min args, max args)
GLOBAL_FUNCTIONS: dict[str, tuple[int, int]] = {
    "size": (1, 1),
    "has": (1, 1),
    "lower": (1, 1),
    "upper": (1, 1),
    "contains_pii": (1, 1),
    "pii_types": (1, 1),
    "estimate_tokens": (1, 1),
    "now": (0, 0),
}

METHODS: dict[str, tuple[int, int]] = {
    "contains": (1, 1),
    "starts_with": (1, 1),
    "ends_with": (1, 1),
    "matches": (1, 1),
    "lower": (0, 0),
    "upper": (0, 0),
    "size": (0, 0),
    "has_role": (1, 1),
    "has_permission": (1, 1),
}

# Facts gathered before evaluation: "<namespace>.<function>" -> arity.
STATEFUL_FUNCTIONS: dict[str, tuple[int, int]] = {
    "rate_limit.count": (2, 2),
    "budget.spent": (2, 2),
}
INTEGRATION_FUNCTIONS: dict[str, tuple[int, int]] = {
    "shield.scan": (1, 1),
    "costops.budget": (1, 1),
    "governance.approved_models": (0, 0),
}
#: The integration each integration fact needs (spec 4.5).
INTEGRATION_OF: dict[str, str] = {name: name.split(".", 1)[0] for name in INTEGRATION_FUNCTIONS}
FACT_FUNCTIONS: dict[str, tuple[int, int]] = {**STATEFUL_FUNCTIONS, **INTEGRATION_FUNCTIONS}
FACT_NAMESPACES = frozenset(name.split(".", 1)[0] for name in FACT_FUNCTIONS)
