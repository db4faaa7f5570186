"""The tamper-evident decision log on PostgreSQL: rows edited, deleted and reordered
behind the writers' backs are each named by `llm-policy evaluate verify`.

Each test gets a schema of its own (`isolated_pool`); the CLI runs as a user
would run it, against that schema.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from policy_cli.testing import clean_env, llm_policy
from policy_core.testing import decision_record
from policy_postgres import PostgresDecisionLog
from policy_postgres.testing import isolated_pool, usable_database_url
from psycopg_pool import AsyncConnectionPool

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def chained(tmp_path: Path) -> AsyncIterator[tuple[AsyncConnectionPool[Any], str, str]]:
    """Three writers' chains of 12 records each: through the queue, the spool and duplicates."""
    url = await usable_database_url()
    async with isolated_pool(url) as (pool, schema):
        for w in range(3):
            # A small queue: most records take the back-pressure path (spool, then replay).
            log = PostgresDecisionLog(
                pool, spool_path=tmp_path / f"spool{w}", queue_size=4, batch_size=3, writer=f"w{w}"
            )
            await log.start()
            for i in range(12):
                log.append(decision_record(f"w{w}-{i}", context={"i": i, "prompt": "hi"}))
            log.append(decision_record(f"w{w}-0"))  # a duplicate: not stored, still linked
            await log.drain()
            await log.close()
        yield pool, url, schema


def verify(url: str, schema: str, tmp_path: Path, *fmt: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(
        LLM_POLICY_DATABASE_URL=url,
        LLM_POLICY_DATABASE_SCHEMA=schema,
        LLM_POLICY_DATA_DIR=str(tmp_path / "cli-data"),
    )
    return subprocess.run(
        llm_policy(*fmt, "evaluate", "verify"),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def execute(pool: AsyncConnectionPool[Any], statement: str, *params: Any) -> None:
    async with pool.connection() as conn:
        await conn.execute(statement.encode(), params)


async def test_intact_chains_verify(
    chained: tuple[AsyncConnectionPool[Any], str, str], tmp_path: Path
) -> None:
    pool, url, schema = chained
    out = verify(url, schema, tmp_path, "-o", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is True
    # 36 stored records plus the 3 duplicates' links, in 3 chains of 13 links.
    assert (report["records"], report["chained"], report["writers"]) == (39, 39, 3)
    assert report["problems"] == []
    async with pool.connection() as conn:
        cur = await conn.execute(b"SELECT count(*) FROM decision_log_duplicates")
        assert await cur.fetchone() == (3,)


async def test_edit_delete_and_reorder_are_each_reported(
    chained: tuple[AsyncConnectionPool[Any], str, str], tmp_path: Path
) -> None:
    pool, url, schema = chained
    # w0: a deny turned into an allow, in place.
    await execute(
        pool,
        "UPDATE decision_log SET decision = 'deny' WHERE chain_writer = %s AND chain_seq = %s",
        "w0",
        5,
    )
    # w1: a record deleted.
    await execute(
        pool, "DELETE FROM decision_log WHERE chain_writer = %s AND chain_seq = %s", "w1", 7
    )
    # w2: two records swapped (their places in the chain exchanged).
    await execute(
        pool,
        "UPDATE decision_log SET chain_seq = CASE chain_seq WHEN 3 THEN 4 ELSE 3 END"
        " WHERE chain_writer = %s AND chain_seq IN (3, 4)",
        "w2",
    )
    out = verify(url, schema, tmp_path, "-o", "json")
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is False
    found = {(p["writer"], p["kind"], p["seq"]) for p in report["problems"]}
    assert ("w0", "altered", 5) in found
    assert ("w1", "missing", 7) in found
    assert ("w2", "altered", 3) in found
    assert report["first"]["writer"] == "w0"
    assert (report["first"]["kind"], report["first"]["seq"]) == ("altered", 5)
    # Named by request id too (back-pressured records are linked ahead of queued ones).
    assert report["first"]["request_id"].startswith("w0-")
    # The table names the first broken link too.
    table = verify(url, schema, tmp_path)
    assert table.returncode == 1
    assert "first broken link: altered: writer 'w0' seq 5" in table.stdout


async def test_a_replaced_record_breaks_the_next_link(
    chained: tuple[AsyncConnectionPool[Any], str, str], tmp_path: Path
) -> None:
    """Delete a record and renumber the rest: the hashes no longer line up."""
    pool, url, schema = chained
    for table in ("decision_log", "decision_log_duplicates"):  # the last two links
        await execute(
            pool, f"DELETE FROM {table} WHERE chain_writer = %s AND chain_seq >= %s", "w1", 12
        )
    first = json.loads(verify(url, schema, tmp_path, "-o", "json").stdout)["first"]
    # Removing the tail leaves no gap (the limit documented in docs/reliability.md) ...
    assert first is None
    for table in ("decision_log", "decision_log_duplicates"):
        await execute(
            pool, f"DELETE FROM {table} WHERE chain_writer = %s AND chain_seq = %s", "w1", 8
        )
    for table in ("decision_log", "decision_log_duplicates"):
        await execute(
            pool,
            f"UPDATE {table} SET chain_seq = chain_seq - 1 WHERE chain_writer = %s AND chain_seq > 8",
            "w1",
        )
    report = json.loads(verify(url, schema, tmp_path, "-o", "json").stdout)
    # ... but renumbering to hide a deleted record alters every record moved.
    assert (report["first"]["writer"], report["first"]["kind"]) == ("w1", "altered")
    assert report["first"]["seq"] == 8


async def test_a_nulled_link_is_a_missing_record(
    chained: tuple[AsyncConnectionPool[Any], str, str], tmp_path: Path
) -> None:
    pool, url, schema = chained
    await execute(
        pool,
        "UPDATE decision_log SET chain_writer = NULL, chain_seq = NULL"
        " WHERE chain_writer = %s AND chain_seq = %s",
        "w2",
        2,
    )
    report = json.loads(verify(url, schema, tmp_path, "-o", "json").stdout)
    assert report["unchained"] == 1
    assert (report["first"]["writer"], report["first"]["kind"]) == ("w2", "missing")
    assert (report["first"]["seq"], report["first"]["last"]) == (2, 2)


async def test_the_documented_command_runs(
    chained: tuple[AsyncConnectionPool[Any], str, str], tmp_path: Path
) -> None:
    _pool, url, schema = chained
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    section = text.split("## evaluate verify", 1)[1].split("\n## ", 1)[0]
    (command,) = re.findall(r"^\$ llm-policy (.*)$", section, flags=re.MULTILINE)
    args = command.split()
    out = verify(url, schema, tmp_path, *args[:-2])
    assert args[-2:] == ["evaluate", "verify"]
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["ok"] is True
