"""X-API-Key authentication over the core's ApiKeyService, with a short memory.

Verified keys are remembered for `cache_seconds` so that a busy client costs
one store read per period, not one per request. A key revoked through this
instance is forgotten at once; through another one, within `cache_seconds`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from policy_core.services import ApiKeyService

from policy_http._auth import AuthError, Principal, permissions_for

__all__ = ["ApiKeyAuth"]

_CACHE_SIZE = 4096
_MAX_KEY_CHARS = 256


class ApiKeyAuth:
    """Turns an API key into a Principal (None service: API keys are refused)."""

    def __init__(
        self,
        service: ApiKeyService | None,
        *,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self._ttl = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[Principal, float]] = {}

    async def verify(self, key: str) -> Principal:
        """The principal of a live key; AuthError otherwise (never naming the key)."""
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        if self.service is None:
            raise AuthError("API keys are not enabled on this server")
        if len(key) > _MAX_KEY_CHARS:
            raise AuthError("the API key is not valid")
        record = await self.service.verify(key)
        if record is None:
            raise AuthError("the API key is not valid or has been revoked")
        principal = Principal(
            id=f"apikey:{record.id}",
            roles=record.roles,
            permissions=permissions_for(record.roles),
            kind="api_key",
        )
        if self._ttl > 0:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = (principal, now + self._ttl)
        return principal

    def forget(self, key_id: str) -> None:
        """Drop cached verifications of a key (called when it is revoked here)."""
        target = f"apikey:{key_id}"
        for cached, (principal, _) in list(self._cache.items()):
            if principal.id == target:
                del self._cache[cached]
