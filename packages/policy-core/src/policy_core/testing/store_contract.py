"""Contract suite of PolicyReader + PolicyWriter.

Use: subclass in a test module and provide an async fixture `policy_store`
yielding an empty store::

    class TestMemoryPolicyStore(PolicyStoreContract):
        @pytest.fixture
        def policy_store(self) -> PolicyStore: return MemoryPolicyStore(SystemClock())
"""

from __future__ import annotations

import asyncio

import msgspec

from policy_core.errors import (
    PolicyAlreadyExists,
    PolicyNotFound,
    RevisionConflict,
    RevisionNotFound,
)
from policy_core.ports import PolicyRecord, PolicyStore
from policy_core.testing._support import new_revision, raises

__all__ = ["PolicyStoreContract"]


class PolicyStoreContract:
    """Edge semantics every policy store shares (see the PolicyReader/PolicyWriter docstrings)."""

    async def test_create_then_get_returns_revision_one(self, policy_store: PolicyStore) -> None:
        created = await policy_store.create(new_revision("p1", tags=("a",), author="alice"))
        got = await policy_store.get("p1")
        assert created == got
        assert (got.id, got.revision, got.status, got.author, got.tags) == (
            "p1",
            1,
            "active",
            "alice",
            ("a",),
        )
        assert got.document["metadata"]["id"] == "p1"
        assert got.text.startswith("metadata:")
        assert got.deleted is False
        assert got.created_at.tzinfo is not None

    async def test_create_existing_id_raises(self, policy_store: PolicyStore) -> None:
        await policy_store.create(new_revision("p1"))
        with raises(PolicyAlreadyExists):
            await policy_store.create(new_revision("p1", marker="again"))

    async def test_get_unknown_raises_not_found(self, policy_store: PolicyStore) -> None:
        with raises(PolicyNotFound):
            await policy_store.get("nope")
        with raises(PolicyNotFound):
            await policy_store.revisions("nope")

    async def test_update_with_expected_revision(self, policy_store: PolicyStore) -> None:
        await policy_store.create(new_revision("p1"))
        second = await policy_store.update(new_revision("p1", marker="two", summary="s2"), 1)
        assert second.revision == 2
        assert (await policy_store.get("p1")).revision == 2
        assert (await policy_store.get("p1", 1)).text != second.text
        assert (await policy_store.get("p1", 2)) == second
        assert second.created_at <= second.updated_at

    async def test_update_with_stale_revision_conflicts(self, policy_store: PolicyStore) -> None:
        await policy_store.create(new_revision("p1"))
        await policy_store.update(new_revision("p1", marker="two"), 1)
        with raises(RevisionConflict) as caught:
            await policy_store.update(new_revision("p1", marker="three"), 1)
        err = caught[0]
        assert isinstance(err, RevisionConflict)
        assert (err.expected, err.actual) == (1, 2)
        assert (await policy_store.get("p1")).revision == 2

    async def test_update_unknown_raises_not_found(self, policy_store: PolicyStore) -> None:
        with raises(PolicyNotFound):
            await policy_store.update(new_revision("ghost"), 1)

    async def test_missing_revision_raises(self, policy_store: PolicyStore) -> None:
        await policy_store.create(new_revision("p1"))
        for bad in (0, 2, -1):
            with raises(RevisionNotFound):
                await policy_store.get("p1", bad)

    async def test_concurrent_updates_exactly_one_wins(self, policy_store: PolicyStore) -> None:
        await policy_store.create(new_revision("p1"))

        async def attempt(i: int) -> PolicyRecord | RevisionConflict:
            try:
                return await policy_store.update(new_revision("p1", marker=f"w{i}"), 1)
            except RevisionConflict as exc:
                return exc

        results = await asyncio.gather(*(attempt(i) for i in range(20)))
        wins = [r for r in results if isinstance(r, PolicyRecord)]
        assert len(wins) == 1
        assert sum(isinstance(r, RevisionConflict) for r in results) == 19
        page = await policy_store.revisions("p1")
        assert [r.revision for r in page.items] == [1, 2]

    async def test_delete_is_soft_and_reported_twice(self, policy_store: PolicyStore) -> None:
        await policy_store.create(new_revision("p1"))
        await policy_store.delete("p1", author="bob")
        with raises(PolicyNotFound):
            await policy_store.get("p1")
        with raises(PolicyNotFound):
            await policy_store.delete("p1")
        with raises(PolicyNotFound):
            await policy_store.update(new_revision("p1", marker="x"), 1)
        old = await policy_store.get("p1", 1)
        assert old.revision == 1
        assert old.deleted is True
        assert [r.revision for r in (await policy_store.revisions("p1")).items] == [1]
        assert await policy_store.load_all() == []
        assert (await policy_store.list()).items == ()

    async def test_delete_with_stale_revision_conflicts(self, policy_store: PolicyStore) -> None:
        await policy_store.create(new_revision("p1"))
        with raises(RevisionConflict):
            await policy_store.delete("p1", expected_revision=3)
        await policy_store.delete("p1", expected_revision=1)

    async def test_recreate_after_delete_continues_numbers(self, policy_store: PolicyStore) -> None:
        await policy_store.create(new_revision("p1"))
        await policy_store.update(new_revision("p1", marker="b"), 1)
        await policy_store.delete("p1")
        again = await policy_store.create(new_revision("p1", marker="c"))
        assert again.revision == 3
        assert again.deleted is False
        assert (await policy_store.get("p1")).revision == 3
        assert [r.revision for r in (await policy_store.revisions("p1")).items] == [1, 2, 3]

    async def test_revisions_carry_author_hash_summary(self, policy_store: PolicyStore) -> None:
        first = await policy_store.create(new_revision("p1", author="a", summary="created"))
        await policy_store.update(new_revision("p1", marker="m", author="b", summary="changed"), 1)
        items = (await policy_store.revisions("p1")).items
        assert [(r.revision, r.author, r.summary) for r in items] == [
            (1, "a", "created"),
            (2, "b", "changed"),
        ]
        assert items[0].hash == first.hash
        assert items[0].created_at <= items[1].created_at

    async def test_revisions_paginate(self, policy_store: PolicyStore) -> None:
        await policy_store.create(new_revision("p1"))
        for n in range(1, 5):
            await policy_store.update(new_revision("p1", marker=str(n)), n)
        seen: list[int] = []
        cursor: str | None = None
        while True:
            page = await policy_store.revisions("p1", limit=2, cursor=cursor)
            seen.extend(r.revision for r in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == [1, 2, 3, 4, 5]

    async def test_list_filters_and_orders_by_id(self, policy_store: PolicyStore) -> None:
        await policy_store.create(new_revision("b", namespace="prod", tags=("pii",)))
        await policy_store.create(new_revision("a", namespace="prod", status="draft"))
        await policy_store.create(new_revision("c", namespace="dev", tags=("pii", "x")))
        ids = [r.id for r in (await policy_store.list()).items]
        assert ids == ["a", "b", "c"]
        by_ns = await policy_store.list(namespace="prod")
        assert [r.id for r in by_ns.items] == ["a", "b"]
        by_status = await policy_store.list(status="draft")
        assert [r.id for r in by_status.items] == ["a"]
        by_tag = await policy_store.list(tag="pii")
        assert [r.id for r in by_tag.items] == ["b", "c"]
        both = await policy_store.list(namespace="dev", tag="pii")
        assert [r.id for r in both.items] == ["c"]
        assert (await policy_store.list(tag="none")).items == ()

    async def test_list_cursor_pagination(self, policy_store: PolicyStore) -> None:
        for i in range(7):
            await policy_store.create(new_revision(f"p{i}"))
        first = await policy_store.list(limit=3)
        assert [r.id for r in first.items] == ["p0", "p1", "p2"]
        assert first.next_cursor is not None
        # A policy added before the cursor position does not shift the next page.
        await policy_store.create(new_revision("p00"))
        second = await policy_store.list(limit=3, cursor=first.next_cursor)
        assert [r.id for r in second.items] == ["p3", "p4", "p5"]
        assert second.next_cursor is not None
        third = await policy_store.list(limit=3, cursor=second.next_cursor)
        assert [r.id for r in third.items] == ["p6"]
        assert third.next_cursor is None

    async def test_list_returns_current_revision(self, policy_store: PolicyStore) -> None:
        await policy_store.create(new_revision("p1", status="draft"))
        await policy_store.update(new_revision("p1", status="active", marker="2"), 1)
        (only,) = (await policy_store.list()).items
        assert (only.revision, only.status) == (2, "active")
        assert (await policy_store.list(status="draft")).items == ()

    async def test_load_all_returns_every_status(self, policy_store: PolicyStore) -> None:
        await policy_store.create(new_revision("z", status="deprecated"))
        await policy_store.create(new_revision("y", status="draft"))
        await policy_store.create(new_revision("x"))
        assert [r.id for r in await policy_store.load_all()] == ["x", "y", "z"]

    async def test_text_and_document_round_trip(self, policy_store: PolicyStore) -> None:
        rev = new_revision("p1")
        weird = rev.text + "# ünïcode ✓ and 'quotes' \"double\"\n"
        doc = dict(rev.document, description="line1\nline2", nested={"n": [1, 2.5, None, True]})
        stored = await policy_store.create(msgspec.structs.replace(rev, text=weird, document=doc))
        got = await policy_store.get("p1")
        assert got.text == weird == stored.text
        assert got.document == doc

    async def test_malformed_cursor_raises_value_error(self, policy_store: PolicyStore) -> None:
        await policy_store.create(new_revision("p1"))
        for bad in ("garbage", "W10", "WzFd", "eyJhIjoxfQ"):
            with raises(ValueError):
                await policy_store.list(cursor=bad)
        with raises(ValueError):
            await policy_store.revisions("p1", cursor="WyJ4Il0")  # ["x"]: not a revision
