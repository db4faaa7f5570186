"""Rate limits as the HTTP API sees them: the services' RateLimiter, and its headers.

The limiter (its limits, its counters in memory or Redis) is built by the
composition root and arrives with the services; this module opens nothing.
"""

from __future__ import annotations

from policy_core.ports import RateDecision, RateLimiter

__all__ = ["RateLimits", "rate_limit_headers"]


class RateLimits:
    """The limiter of the bound services (None: nothing is limited)."""

    def __init__(self, limiter: RateLimiter | None = None) -> None:
        self.limiter = limiter

    async def ping(self) -> bool:
        """True when the counters answer (always without limits or in memory)."""
        return True if self.limiter is None else await self.limiter.ping()


def rate_limit_headers(refusal: RateDecision) -> dict[str, str]:
    """`RateLimit-*` (IETF draft) and, on refusal, `Retry-After`."""
    out = {
        "RateLimit-Limit": str(refusal.limit),
        "RateLimit-Remaining": str(refusal.remaining),
        "RateLimit-Reset": str(refusal.reset_seconds),
    }
    if not refusal.allowed:
        out["Retry-After"] = str(max(refusal.reset_seconds, 1))
    return out
