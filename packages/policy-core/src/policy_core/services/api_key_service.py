"""ApiKeyService: issue, verify and revoke service API keys (stored hashed)."""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence

from policy_core.clock import SystemClock
from policy_core.ports import ApiKeyRecord, ApiKeyStore, Clock

__all__ = ["ApiKeyService", "hash_api_key"]

_SCHEME = "lpk"


def hash_api_key(key: str) -> str:
    """The stored form of a key: "sha256:<hex>" (keys are 192-bit random, so no salt needed)."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class ApiKeyService:
    """Keys look like `lpk_<prefix>_<secret>`; only the prefix and the hash are stored."""

    def __init__(self, store: ApiKeyStore, clock: Clock | None = None) -> None:
        self._store = store
        self._clock: Clock = clock or SystemClock()

    async def create(self, name: str, roles: Sequence[str]) -> tuple[str, ApiKeyRecord]:
        """A new key: (the key, shown once; its record)."""
        prefix = secrets.token_hex(6)
        key = f"{_SCHEME}_{prefix}_{secrets.token_urlsafe(24)}"
        record = ApiKeyRecord(
            id=uuid.uuid4().hex,
            name=name,
            prefix=prefix,
            key_hash=hash_api_key(key),
            roles=tuple(roles),
            created_at=self._clock.now(),
        )
        await self._store.create(record)
        return key, record

    async def verify(self, key: str) -> ApiKeyRecord | None:
        """The record of a valid, unrevoked key, else None (constant-time hash comparison)."""
        parts = key.split("_", 2)
        if len(parts) != 3 or parts[0] != _SCHEME:
            return None
        record = await self._store.get_by_prefix(parts[1])
        if record is None or record.revoked_at is not None:
            return None
        if not hmac.compare_digest(record.key_hash, hash_api_key(key)):
            return None
        return record

    async def list(self, *, include_revoked: bool = False) -> builtins.list[ApiKeyRecord]:
        return await self._store.list(include_revoked=include_revoked)

    async def revoke(self, key_id: str) -> bool:
        """Revoke by id; False when unknown."""
        return await self._store.revoke(key_id, self._clock.now())
