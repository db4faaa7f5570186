"""The composition roots: one per deployment, everything opened is closed, nothing at import."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from policy_cli.bootstrap import Services, bootstrap
from policy_cli.errors import CliError, ExitCode
from policy_cli.settings import Settings
from policy_core.services import EvaluationRequest

DATABASE_URL = os.environ.get(
    "LLM_POLICY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
POLICY = """\
metadata: {id: p}
rules:
  - id: deny-x
    condition: "user.id == 'x'"
    action: {decision: deny, reason: no x}
"""


async def exercise(services: Services) -> None:
    """A write, a read and an evaluation, through the services only."""
    await services.policies.create(POLICY, author="test")
    assert [r.id for r in (await services.policies.list()).items] == ["p"]
    result = await services.evaluation.evaluate(EvaluationRequest(context={"user": {"id": "x"}}))
    assert result.decision.decision == "deny"
    assert await services.ready()


async def test_memory_deployment_opens_and_closes() -> None:
    async with bootstrap(Settings(deployment="memory")) as services:
        await exercise(services)
        feed = services.policies._feed  # the memory feed the service subscribed to
        assert feed is not None
        assert feed._handlers  # type: ignore[attr-defined]
    assert not feed._handlers  # type: ignore[attr-defined]  # unsubscribed on the way out


async def test_closed_even_when_the_block_fails() -> None:
    feeds: list[Any] = []

    async def failing() -> None:
        async with bootstrap(Settings(deployment="memory")) as services:
            feeds.append(services.policies._feed)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await failing()
    assert not feeds[0]._handlers


async def test_seeding_fills_an_empty_store_only(tmp_path: os.PathLike[str]) -> None:
    from pathlib import Path

    root = Path(tmp_path)
    (root / "p.yaml").write_text(POLICY)
    (root / "multi.yaml").write_text(
        "metadata: {id: a}\nrules: []\n---\nmetadata: {id: b}\nrules: []\n"
    )
    settings = Settings(deployment="memory", seed_policies=str(root))
    async with bootstrap(settings) as services:
        page = await services.policies.list()
        assert [r.id for r in page.items] == ["a", "b", "p"]
        assert (await services.policies.get("p")).text == POLICY  # the text as written


@pytest.fixture
def pg_schema() -> Iterator[str]:
    try:
        psycopg.connect(DATABASE_URL, connect_timeout=3).close()
    except psycopg.OperationalError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {DATABASE_URL} is unreachable")
        pytest.skip(f"PostgreSQL not reachable at {DATABASE_URL}")
    schema = f"cli_boot_{uuid.uuid4().hex[:10]}"
    yield schema
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_single_node_on_postgresql(pg_schema: str, tmp_path: os.PathLike[str]) -> None:
    settings = Settings(
        deployment="single",
        database_url=DATABASE_URL,
        database_schema=pg_schema,
        data_dir=str(tmp_path),
    )
    async with bootstrap(settings) as services:
        await exercise(services)
        assert services.database_url == DATABASE_URL
    # a second process (here: a second root) sees what the first stored
    async with bootstrap(settings) as again:
        assert (await again.policies.get("p")).revision == 1
        assert again.holder.current.policies[0].id == "p"


async def test_unreachable_database_is_store_unavailable(tmp_path: os.PathLike[str]) -> None:
    from policy_core.errors import StoreUnavailable

    settings = Settings(
        database_url="postgresql://postgres@127.0.0.1:9/none", data_dir=str(tmp_path)
    )
    with pytest.raises(StoreUnavailable):
        async with bootstrap(settings):
            pass


async def test_cluster_with_redis_down_says_which_redis(
    pg_schema: str, tmp_path: os.PathLike[str]
) -> None:
    settings = Settings(
        deployment="cluster",
        database_url=DATABASE_URL,
        database_schema=pg_schema,
        redis_url="redis://127.0.0.1:1/0",  # nothing listens on port 1
        data_dir=str(tmp_path),
    )
    with pytest.raises(CliError) as info:
        async with bootstrap(settings):
            pass
    assert info.value.exit_code == ExitCode.UNREACHABLE
    assert "127.0.0.1:1" in info.value.message


def test_importing_does_no_work() -> None:
    """No environment read, no connection, no validation until a command or bootstrap runs."""
    probe = """
import socket
def refuse(*a, **k):
    raise AssertionError("connected at import time")
socket.socket.connect = refuse
socket.create_connection = refuse
import policy_cli.main, policy_cli.bootstrap, policy_cli.wiring, policy_cli.asgi
import policy_cli.backends.store, policy_cli.backends.remote, policy_cli.runner
print("ok")
"""
    env = {**os.environ, "LLM_POLICY_NOT_A_SETTING": "1", "LLM_POLICY_PORT": "nope"}
    run = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


async def test_each_process_gets_its_own_spool_slot(tmp_path: os.PathLike[str]) -> None:
    from contextlib import AsyncExitStack
    from pathlib import Path

    from policy_cli.wiring import _spool_slot

    root = Path(tmp_path) / "spool"
    first, second = AsyncExitStack(), AsyncExitStack()
    assert _spool_slot(root, first).name == "decisions-0"
    assert _spool_slot(root, second).name == "decisions-1"
    await first.aclose()  # released: the next process takes (and replays) slot 0
    third = AsyncExitStack()
    assert _spool_slot(root, third).name == "decisions-0"
    await second.aclose()
    await third.aclose()


async def test_a_new_slot_holder_adopts_the_journals_of_free_slots(
    tmp_path: os.PathLike[str],
) -> None:
    """Journal segments of a slot whose holder died move to the next process's slot (which
    ships them); a slot still held keeps its own."""
    from contextlib import AsyncExitStack
    from pathlib import Path

    from policy_cli.wiring import _spool_slot
    from policy_postgres.journal import segments

    root = Path(tmp_path) / "spool"
    held, dead = AsyncExitStack(), AsyncExitStack()
    assert _spool_slot(root, held).name == "decisions-0"
    assert _spool_slot(root, dead).name == "decisions-1"
    (root / "decisions-0.journal.0").write_text("held\n")
    (root / "decisions-1.journal.0").write_text("dead-a\n")
    (root / "decisions-1.journal.1").write_text("dead-b\n")
    await dead.aclose()  # as a SIGKILL would: the lock goes, the segments stay
    (root / "decisions-2.lock").touch()
    (root / "decisions-2.journal.4").write_text("older\n")  # a slot nobody holds now
    heir = AsyncExitStack()
    slot = _spool_slot(root, heir)
    assert slot.name == "decisions-1"
    adopted = [p.read_text() for p in segments(slot)]
    assert sorted(adopted) == ["dead-a\n", "dead-b\n", "older\n"]
    assert [p.read_text() for p in segments(root / "decisions-0")] == ["held\n"]
    assert segments(root / "decisions-2") == []
    await heir.aclose()
    await held.aclose()
