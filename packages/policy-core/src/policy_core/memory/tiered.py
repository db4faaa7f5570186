"""A DecisionCache wrapping two others: L1 in process in front of a shared L2 (Redis)."""

from __future__ import annotations

import logging

from policy_core.model import Decision
from policy_core.ports import DecisionCache

__all__ = ["TieredDecisionCache"]

_log = logging.getLogger(__name__)


class TieredDecisionCache:
    """Reads L1, then L2 (copying an L2 hit into L1); writes both.

    The shared L2 is an optimisation: when it fails, the request goes on
    without it (counted in `l2_errors`). An L2 hit is kept in L1 for at most
    `backfill_ttl` seconds, since the port does not tell how long L2 keeps it.
    """

    def __init__(self, l1: DecisionCache, l2: DecisionCache, *, backfill_ttl: int = 5) -> None:
        self._l1, self._l2, self._backfill = l1, l2, backfill_ttl
        self.l2_errors = 0

    async def get(self, key: str) -> Decision | None:
        hit = await self._l1.get(key)
        if hit is not None:
            return hit
        try:
            hit = await self._l2.get(key)
        except Exception:
            self._l2_failed("get")
            return None
        if hit is not None:
            await self._l1.set(key, hit, self._backfill)
        return hit

    async def set(self, key: str, decision: Decision, ttl_seconds: int) -> None:
        await self._l1.set(key, decision, ttl_seconds)
        try:
            await self._l2.set(key, decision, ttl_seconds)
        except Exception:
            self._l2_failed("set")

    async def clear(self) -> None:
        await self._l1.clear()
        try:
            await self._l2.clear()
        except Exception:
            self._l2_failed("clear")

    def _l2_failed(self, what: str) -> None:
        self.l2_errors += 1
        _log.warning("L2 decision cache %s failed; going on without it", what, exc_info=True)
