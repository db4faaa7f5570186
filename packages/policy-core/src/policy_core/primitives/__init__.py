"""Primitives behind the derived facts: token estimates, PII detection, prices.

Importing this package is cheap: `re2` is loaded, and the PII patterns
compiled, at the first PII call.
"""

from policy_core.primitives.costs import (
    PRICES,
    PRICES_AS_OF,
    ModelPrice,
    estimate_cost,
    estimate_request_cost,
    model_price,
)
from policy_core.primitives.pii import (
    PII_TYPES,
    PiiMatch,
    contains_pii,
    find_pii,
    luhn_valid,
    pii_types,
)
from policy_core.primitives.redact import (
    DEFAULT_PLACEHOLDER,
    REDACT_PATTERNS,
    REDACTED,
    redact_context,
    redact_text,
)
from policy_core.primitives.tokens import (
    MESSAGE_OVERHEAD_TOKENS,
    estimate_messages_tokens,
    estimate_request_tokens,
    estimate_tokens,
)

__all__ = [
    "DEFAULT_PLACEHOLDER",
    "MESSAGE_OVERHEAD_TOKENS",
    "PII_TYPES",
    "PRICES",
    "PRICES_AS_OF",
    "REDACTED",
    "REDACT_PATTERNS",
    "ModelPrice",
    "PiiMatch",
    "contains_pii",
    "estimate_cost",
    "estimate_messages_tokens",
    "estimate_request_cost",
    "estimate_request_tokens",
    "estimate_tokens",
    "find_pii",
    "luhn_valid",
    "model_price",
    "pii_types",
    "redact_context",
    "redact_text",
]
