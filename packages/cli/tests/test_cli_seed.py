"""`seed_if_empty`: an empty store is seeded once, even by instances starting together."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from policy_cli.seed import seed_if_empty
from policy_core.errors import PolicyLoadError
from policy_core.memory import MemoryPolicyStore, SystemClock
from policy_core.services import EngineHolder, PolicyService

_POLICY = "metadata: {{id: {id}}}\nrules:\n  - {{id: r, action: {{decision: deny}}}}\n"


def _service(store: MemoryPolicyStore) -> PolicyService:
    return PolicyService(reader=store, writer=store, holder=EngineHolder())


def _seed_dir(tmp_path: Path, ids: list[str]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name in ids:
        (tmp_path / f"{name}.yaml").write_text(_POLICY.format(id=name))
    return tmp_path


async def test_two_instances_seeding_one_empty_store_both_start(tmp_path: Path) -> None:
    """The HTTP and gRPC servers (or replicas) both find the store empty: each policy is
    created once, neither start fails on the other's policies (the reliability stack's
    soak once died on "policy 'rel-deny' already exists" when gRPC seeded first)."""
    root = _seed_dir(tmp_path, [f"p{i}" for i in range(20)])
    store = MemoryPolicyStore(SystemClock())
    together = asyncio.Barrier(3)

    class StartingTogether:
        """The store, with every instance's emptiness check answered before any creates."""

        async def list(self, **kwargs: Any) -> Any:
            page = await store.list(**kwargs)
            await together.wait()
            return page

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

    reader: Any = StartingTogether()
    services = [PolicyService(reader=reader, writer=store, holder=EngineHolder()) for _ in range(3)]
    counts = await asyncio.gather(*(seed_if_empty(s, root) for s in services))
    assert sum(counts) == 20
    listed = await _service(store).list(limit=100)
    assert sorted(p.id for p in listed.items) == sorted(f"p{i}" for i in range(20))
    assert all(p.revision == 1 for p in listed.items)


async def test_a_store_with_policies_is_not_seeded_and_a_bad_set_stores_nothing(
    tmp_path: Path,
) -> None:
    store = MemoryPolicyStore(SystemClock())
    assert await seed_if_empty(_service(store), _seed_dir(tmp_path / "a", ["one"])) == 1
    assert await seed_if_empty(_service(store), _seed_dir(tmp_path / "b", ["two"])) == 0
    assert [p.id for p in (await _service(store).list(limit=10)).items] == ["one"]

    empty = MemoryPolicyStore(SystemClock())
    bad = _seed_dir(tmp_path / "c", ["x"])
    (bad / "again.yaml").write_text(_POLICY.format(id="x"))  # the same id twice in the set
    with pytest.raises(PolicyLoadError, match="duplicate policy id 'x'"):
        await seed_if_empty(_service(empty), bad)
    assert not (await _service(empty).list(limit=10)).items
