"""The policy resource: the one shape in which the APIs and the CLI show a stored revision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from policy_core.ports import PolicyRecord, PolicyResource

RECORD = PolicyRecord(
    id="p1",
    namespace="prod",
    revision=3,
    status="draft",
    document={"metadata": {"id": "p1"}, "status": "draft", "rules": []},
    text="metadata: {id: p1}\nstatus: draft\nrules: []\n",
    hash="sha256:abc",
    author="alice",
    tags=("t",),
    created_at=datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=UTC),
    updated_at=datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))),
)


def test_the_resource_keeps_what_callers_see_and_leaves_the_text_inside() -> None:
    assert PolicyResource.of(RECORD).json() == {
        "id": "p1",
        "namespace": "prod",
        "revision": 3,
        "status": "draft",
        "document": {"metadata": {"id": "p1"}, "status": "draft", "rules": []},
        "hash": "sha256:abc",
        "author": "alice",
        "created_at": "2026-01-02T03:04:05.000600Z",
        "updated_at": "2026-01-02T03:04:05Z",  # normalised to UTC
    }


def test_times_are_utc_whatever_zone_the_record_came_in() -> None:
    resource = PolicyResource.of(RECORD)
    assert resource.updated_at == RECORD.updated_at
    assert resource.updated_at.utcoffset() == timedelta(0)
