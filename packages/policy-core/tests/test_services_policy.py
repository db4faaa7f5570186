"""PolicyService over the memory ports: versioning, compile-before-store, engine swaps, feed."""

from __future__ import annotations

import asyncio

import pytest
from policy_core.errors import (
    PolicyAlreadyExists,
    PolicyLoadError,
    PolicyNotFound,
    RevisionConflict,
    RevisionNotFound,
)
from policy_core.memory import MemoryChangeFeed, MemoryPolicyStore, SystemClock
from policy_core.ports import PolicyRecord
from policy_core.services import EngineHolder, PolicyService

P1 = """\
# the security policy
metadata: {id: p1, namespace: prod, tags: [security]}
config: {fail_open: false}
rules:
  - id: block-bad
    condition: "user.id == 'bad'"
    action: {decision: deny, reason: bad user}
"""

P1_V2 = """\
metadata: {id: p1, namespace: prod, tags: [security]}
config: {fail_open: true}
rules:
  - id: warn-new
    condition: "user.id == 'new'"
    action: {decision: warn, reason: new user}
"""


def make_service(
    store: MemoryPolicyStore | None = None, feed: MemoryChangeFeed | None = None
) -> PolicyService:
    return PolicyService(
        reader=store or MemoryPolicyStore(SystemClock()),
        writer=store or MemoryPolicyStore(SystemClock()),
        holder=EngineHolder(),
        feed=feed,
    )


@pytest.fixture
def store() -> MemoryPolicyStore:
    return MemoryPolicyStore(SystemClock())


@pytest.fixture
async def service(store: MemoryPolicyStore) -> PolicyService:
    svc = make_service(store)
    await svc.start()
    return svc


def decide(svc: PolicyService, user: str) -> str:
    return svc.holder.current.evaluate({"user": {"id": user}}).decision


async def test_create_stores_and_enforces(service: PolicyService) -> None:
    generation = service.holder.generation
    record = await service.create(P1, author="alice")
    assert (record.id, record.revision, record.namespace, record.status) == (
        "p1",
        1,
        "prod",
        "active",
    )
    assert record.text == P1  # kept exactly as submitted, comment included
    assert record.document["metadata"]["id"] == "p1"
    assert record.hash.startswith("sha256:")
    assert record.tags == ("security",)
    assert service.holder.generation == generation + 1
    assert decide(service, "bad") == "deny"
    assert decide(service, "ok") == "allow"


async def test_create_existing_id_rejected(service: PolicyService) -> None:
    await service.create(P1)
    with pytest.raises(PolicyAlreadyExists):
        await service.create(P1)


async def test_invalid_document_is_never_stored(service: PolicyService) -> None:
    engine = service.holder.current
    bad = P1.replace("config: {fail_open: false}", "config: {fail_opn: false}")
    with pytest.raises(PolicyLoadError) as caught:
        await service.create(bad)
    assert caught.value.issues[0].line == 3
    assert (await service.list()).items == ()
    assert service.holder.current is engine


async def test_one_document_per_write(service: PolicyService) -> None:
    two = P1 + "---\n" + P1_V2.replace("id: p1", "id: p2")
    with pytest.raises(PolicyLoadError, match="exactly one policy document"):
        await service.create(two)


async def test_update_checks_revision_and_id(service: PolicyService) -> None:
    await service.create(P1)
    second = await service.update("p1", P1_V2, expected_revision=1, author="bob")
    assert second.revision == 2
    assert decide(service, "bad") == "allow"
    assert decide(service, "new") == "warn"
    with pytest.raises(RevisionConflict):
        await service.update("p1", P1, expected_revision=1)
    with pytest.raises(PolicyLoadError, match="does not match"):
        await service.update("p1", P1_V2.replace("id: p1", "id: other"), expected_revision=2)
    with pytest.raises(PolicyNotFound):
        await service.update("ghost", P1.replace("id: p1", "id: ghost"), expected_revision=1)


async def test_revisions_summarise_changes(service: PolicyService) -> None:
    await service.create(P1, author="alice")
    await service.update("p1", P1_V2, expected_revision=1, author="bob")
    items = (await service.revisions("p1")).items
    assert [(r.revision, r.author) for r in items] == [(1, "alice"), (2, "bob")]
    assert items[0].summary == "created with 1 rule(s): block-bad"
    assert items[1].summary == (
        "rules added: warn-new; rules removed: block-bad; changed: config.fail_open"
    )
    assert items[0].hash != items[1].hash


async def test_rollback_writes_a_copy_of_revision_n(service: PolicyService) -> None:
    first = await service.create(P1)
    await service.update("p1", P1_V2, expected_revision=1)
    third = await service.rollback("p1", 1, author="carol")
    assert third.revision == 3
    assert (third.text, third.hash, third.document) == (first.text, first.hash, first.document)
    assert decide(service, "bad") == "deny"
    summary = (await service.revisions("p1")).items[-1].summary
    assert summary.startswith("rollback to revision 1: rules added: block-bad")
    with pytest.raises(RevisionNotFound):
        await service.rollback("p1", 9)
    with pytest.raises(RevisionConflict):
        await service.rollback("p1", 1, expected_revision=2)


async def test_status_change_keeps_the_yaml(service: PolicyService) -> None:
    await service.create(P1)
    draft = await service.set_status("p1", "draft", author="dan")
    assert (draft.revision, draft.status) == (2, "draft")
    assert draft.text.startswith("status: draft\n# the security policy\n")
    decision = service.holder.current.evaluate({"user": {"id": "bad"}})
    assert decision.decision == "allow"  # a draft runs in shadow only
    assert decision.shadow is not None
    assert decision.shadow.decision == "deny"
    active = await service.set_status("p1", "active")
    assert active.text.startswith("status: active\n")
    assert (await service.revisions("p1")).items[-1].summary == "status: draft -> active"
    deprecated = await service.set_status("p1", "deprecated", expected_revision=3)
    assert deprecated.status == "deprecated"
    assert decide(service, "bad") == "allow"
    with pytest.raises(ValueError, match="status must be one of"):
        await service.set_status("p1", "retired")  # type: ignore[arg-type]


async def test_status_change_of_json_text(service: PolicyService) -> None:
    text = '{"metadata": {"id": "j1"}, "rules": []}'
    await service.create(text)
    record = await service.set_status("j1", "draft")
    assert record.status == "draft"
    assert record.text.lstrip().startswith("{")


async def test_delete_then_create_again(service: PolicyService) -> None:
    await service.create(P1)
    await service.update("p1", P1_V2, expected_revision=1)
    await service.delete("p1", author="erin")
    assert decide(service, "new") == "allow"
    with pytest.raises(PolicyNotFound):
        await service.get("p1")
    with pytest.raises(PolicyNotFound):
        await service.delete("p1")
    again = await service.create(P1)
    assert again.revision == 3
    assert decide(service, "bad") == "deny"


async def test_list_and_get(service: PolicyService) -> None:
    await service.create(P1)
    await service.create(P1_V2.replace("id: p1, namespace: prod", "id: p2, namespace: dev"))
    assert [r.id for r in (await service.list(namespace="dev")).items] == ["p2"]
    assert [r.id for r in (await service.list(tag="security")).items] == ["p1", "p2"]
    page = await service.list(limit=1)
    assert page.next_cursor is not None
    assert [r.id for r in (await service.list(cursor=page.next_cursor)).items] == ["p2"]
    assert (await service.get("p1", 1)).revision == 1


async def test_validate_reports_warnings_without_storing(service: PolicyService) -> None:
    text = P1.replace("user.id == 'bad'", "1 == 2")
    report = service.validate(text)
    assert any("never match" in w.message for w in report.warnings)
    assert (await service.list()).items == ()
    with pytest.raises(PolicyLoadError):
        service.validate("metadata: {id: x}\nrules: [{id: r}]\n")


async def test_reload_picks_up_what_another_instance_wrote(store: MemoryPolicyStore) -> None:
    feed = MemoryChangeFeed()
    a, b = make_service(store, feed), make_service(store, feed)
    await a.start()
    await b.start()
    await a.create(P1)
    assert decide(b, "bad") == "deny"
    await a.update("p1", P1_V2, expected_revision=1)
    assert decide(b, "new") == "warn"
    await a.delete("p1")
    assert decide(b, "new") == "allow"
    await b.close()
    await a.create(P1.replace("id: p1", "id: p9"))
    assert decide(b, "bad") == "allow"  # unsubscribed: no longer follows
    await b.reload()
    assert decide(b, "bad") == "deny"


async def test_start_loads_stored_policies(store: MemoryPolicyStore) -> None:
    writer = make_service(store)
    await writer.start()
    await writer.create(P1)
    fresh = make_service(store)
    assert fresh.holder.loaded is False
    await fresh.start()
    assert fresh.holder.loaded is True
    assert decide(fresh, "bad") == "deny"


async def test_twenty_concurrent_updates_one_wins(store: MemoryPolicyStore) -> None:
    creator = make_service(store)
    await creator.start()
    await creator.create(P1)
    services = [make_service(store) for _ in range(20)]
    for svc in services:
        await svc.start()

    async def attempt(svc: PolicyService, n: int) -> PolicyRecord | RevisionConflict:
        text = P1_V2.replace("new user", f"new user {n}")
        try:
            return await svc.update("p1", text, expected_revision=1)
        except RevisionConflict as exc:
            return exc

    results = await asyncio.gather(*(attempt(s, n) for n, s in enumerate(services)))
    assert sum(isinstance(r, PolicyRecord) for r in results) == 1
    assert sum(isinstance(r, RevisionConflict) for r in results) == 19
    assert [r.revision for r in (await creator.revisions("p1")).items] == [1, 2]
