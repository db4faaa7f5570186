"""In-memory API key store."""

from __future__ import annotations

import builtins
from datetime import datetime

import msgspec

from policy_core.ports import ApiKeyRecord

__all__ = ["MemoryApiKeyStore"]


class MemoryApiKeyStore:
    """Keys by id, with a prefix index."""

    def __init__(self) -> None:
        self._by_id: dict[str, ApiKeyRecord] = {}

    async def create(self, record: ApiKeyRecord) -> None:
        if record.id in self._by_id:
            raise ValueError(f"API key id {record.id!r} already exists")
        if any(k.prefix == record.prefix for k in self._by_id.values()):
            raise ValueError(f"API key prefix {record.prefix!r} already exists")
        self._by_id[record.id] = record

    async def get_by_prefix(self, prefix: str) -> ApiKeyRecord | None:
        return next((k for k in self._by_id.values() if k.prefix == prefix), None)

    async def list(self, *, include_revoked: bool = False) -> builtins.list[ApiKeyRecord]:
        keys = sorted(self._by_id.values(), key=lambda k: (k.created_at, k.id))
        return [k for k in keys if include_revoked or k.revoked_at is None]

    async def revoke(self, key_id: str, at: datetime) -> bool:
        record = self._by_id.get(key_id)
        if record is None:
            return False
        if record.revoked_at is None:
            self._by_id[key_id] = msgspec.structs.replace(record, revoked_at=at)
        return True
