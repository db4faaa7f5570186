"""UsageService, ApiKeyService and the revision summaries."""

from __future__ import annotations

import math

import pytest
from policy_core.memory import ManualClock, MemoryApiKeyStore, MemoryUsageStore
from policy_core.services import ApiKeyService, UsageService, hash_api_key, summarize_change
from policy_core.testing import T0


async def test_usage_service_validates_and_records() -> None:
    clock = ManualClock(T0)
    usage = MemoryUsageStore(clock)
    service = UsageService(usage)
    await service.record_spend("team:a", 2.5)
    await service.record_spend("team:a", 0.5, T0)
    fact = ("budget.spent", "team:a", "day")
    assert await usage.fetch([fact]) == {fact: 3.0}
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="finite"):
            await service.record_spend("team:a", bad)
    with pytest.raises(ValueError, match="key"):
        await service.record_spend("", 1.0)
    with pytest.raises(ValueError, match="timezone"):
        await service.record_spend("k", 1.0, T0.replace(tzinfo=None))


async def test_api_keys_issue_verify_revoke() -> None:
    service = ApiKeyService(MemoryApiKeyStore(), ManualClock(T0))
    key, record = await service.create("ci", ["evaluator"])
    assert key.startswith(f"lpk_{record.prefix}_")
    assert record.key_hash == hash_api_key(key)
    assert key not in repr(record)
    assert await service.verify(key) == record
    assert await service.verify(key + "x") is None
    assert await service.verify("not-a-key") is None
    assert await service.verify(f"lpk_{record.prefix}_wrong") is None
    assert [k.id for k in await service.list()] == [record.id]
    assert await service.revoke(record.id) is True
    assert await service.verify(key) is None
    assert await service.revoke("unknown") is False
    assert [k.id for k in await service.list(include_revoked=True)] == [record.id]


def test_summary_of_changes() -> None:
    old = {
        "metadata": {"id": "p", "tags": ["a"]},
        "config": {"fail_open": False},
        "rules": [{"id": "x", "action": {"decision": "deny"}}, {"id": "y"}],
    }
    assert summarize_change(None, old) == "created with 2 rule(s): x, y"
    assert summarize_change(old, old) == "no change"
    new = {
        "metadata": {"id": "p", "tags": ["a", "b"]},
        "config": {"fail_open": True},
        "rules": [{"id": "x", "action": {"decision": "warn"}}, {"id": "z"}],
        "exceptions": [{"id": "e"}],
    }
    assert summarize_change(old, new) == (
        "rules added: z; rules removed: y; rules changed: x; exceptions added: e; "
        "changed: config.fail_open, metadata.tags"
    )
    reordered = dict(old, rules=list(reversed(old["rules"])))
    assert summarize_change(old, reordered) == "rules reordered"
