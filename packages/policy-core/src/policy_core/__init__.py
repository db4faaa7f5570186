"""policy_core: the policy language, its compiler and the decision engine. Pure: no I/O.

Public names are imported lazily so that `import policy_core` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policy_core.engine import (
        PolicyEngine as PolicyEngine,
        Selection as Selection,
        freeze_after_load as freeze_after_load,
    )
    from policy_core.errors import (
        Issue as Issue,
        PolicyAlreadyExists as PolicyAlreadyExists,
        PolicyEngineError as PolicyEngineError,
        PolicyLoadError as PolicyLoadError,
        PolicyNotFound as PolicyNotFound,
        RevisionConflict as RevisionConflict,
        RevisionNotFound as RevisionNotFound,
        StoreUnavailable as StoreUnavailable,
    )
    from policy_core.language import (
        ContextSchema as ContextSchema,
        ValidationReport as ValidationReport,
        load_policies as load_policies,
        load_policy_text as load_policy_text,
        parse_expression as parse_expression,
        to_expression as to_expression,
        validate_policy_text as validate_policy_text,
    )
    from policy_core.model import (
        Decision as Decision,
        FactRequest as FactRequest,
        Policy as Policy,
    )

_EXPORTS = {
    "PolicyEngine": "policy_core.engine",
    "Selection": "policy_core.engine",
    "freeze_after_load": "policy_core.engine",
    "FactRequest": "policy_core.model",
    "Decision": "policy_core.model",
    "Policy": "policy_core.model",
    "Issue": "policy_core.errors",
    "PolicyEngineError": "policy_core.errors",
    "PolicyLoadError": "policy_core.errors",
    "PolicyNotFound": "policy_core.errors",
    "PolicyAlreadyExists": "policy_core.errors",
    "RevisionConflict": "policy_core.errors",
    "RevisionNotFound": "policy_core.errors",
    "StoreUnavailable": "policy_core.errors",
    "ContextSchema": "policy_core.language",
    "ValidationReport": "policy_core.language",
    "load_policies": "policy_core.language",
    "load_policy_text": "policy_core.language",
    "validate_policy_text": "policy_core.language",
    "parse_expression": "policy_core.language",
    "to_expression": "policy_core.language",
}

__all__ = [
    "ContextSchema",
    "Decision",
    "FactRequest",
    "Issue",
    "Policy",
    "PolicyAlreadyExists",
    "PolicyEngine",
    "PolicyEngineError",
    "PolicyLoadError",
    "PolicyNotFound",
    "RevisionConflict",
    "RevisionNotFound",
    "Selection",
    "StoreUnavailable",
    "ValidationReport",
    "freeze_after_load",
    "load_policies",
    "load_policy_text",
    "parse_expression",
    "to_expression",
    "validate_policy_text",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'policy_core' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
