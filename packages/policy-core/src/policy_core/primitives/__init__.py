"""Primitives behind the derived facts: token estimates, PII detection, prices."""

from policy_core.primitives.costs import (
    PRICES,
    PRICES_AS_OF,
    ModelPrice,
    estimate_cost,
    estimate_request_cost,
    model_price,
)
from policy_core.primitives.tokens import (
    MESSAGE_OVERHEAD_TOKENS,
    estimate_messages_tokens,
    estimate_request_tokens,
    estimate_tokens,
)

__all__ = [
    "MESSAGE_OVERHEAD_TOKENS",
    "PRICES",
    "PRICES_AS_OF",
    "ModelPrice",
    "estimate_cost",
    "estimate_messages_tokens",
    "estimate_request_cost",
    "estimate_request_tokens",
    "estimate_tokens",
    "model_price",
]
