"""Schema migrations: numbered SQL files `NNNN_name.up.sql` / `NNNN_name.down.sql`.

Each migrate/rollback runs in one transaction holding an advisory lock keyed
by the schema, so instances starting together apply each migration once.
Objects are created in the connection's current schema (its search_path).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

from psycopg import AsyncConnection

from policy_postgres.errors import translate_errors

__all__ = [
    "Migration",
    "MigrationStatus",
    "load_migrations",
    "migrate",
    "reset",
    "rollback",
    "status",
]

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$")
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('llm_policy_migrations:' || current_schema()))"
_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: str
    down: str


@dataclass(frozen=True)
class MigrationStatus:
    version: int
    name: str
    applied_at: datetime | None  # None when pending


def load_migrations() -> list[Migration]:
    """Every migration shipped with the package, by version; each must have up and down."""
    files: dict[tuple[int, str], dict[str, str]] = {}
    for entry in resources.files(__package__).iterdir():
        m = _FILE.match(entry.name)
        if m:
            key = (int(m.group(1)), m.group(2))
            files.setdefault(key, {})[m.group(3)] = entry.read_text(encoding="utf-8")
    out = []
    for (version, name), parts in sorted(files.items()):
        if set(parts) != {"up", "down"}:
            raise RuntimeError(f"migration {version:04d}_{name} needs both .up.sql and .down.sql")
        out.append(Migration(version, name, parts["up"], parts["down"]))
    return out


async def _applied(conn: AsyncConnection[Any]) -> dict[int, datetime]:
    await conn.execute(_TABLE)
    cur = await conn.execute("SELECT version, applied_at FROM schema_migrations")
    return {int(v): at for v, at in await cur.fetchall()}


async def migrate(conn: AsyncConnection[Any], target: int | None = None) -> list[int]:
    """Apply pending migrations up to `target` (all when None); the versions applied."""
    done: list[int] = []
    async with translate_errors("migrate the schema"), conn.transaction():
        await conn.execute(_LOCK)
        applied = await _applied(conn)
        for mig in load_migrations():
            if mig.version in applied or (target is not None and mig.version > target):
                continue
            await conn.execute(mig.up.encode())
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (mig.version, mig.name),
            )
            done.append(mig.version)
    return done


async def rollback(conn: AsyncConnection[Any], steps: int = 1) -> list[int]:
    """Undo the last `steps` applied migrations, newest first; the versions undone."""
    undone: list[int] = []
    async with translate_errors("roll back the schema"), conn.transaction():
        await conn.execute(_LOCK)
        applied = await _applied(conn)
        by_version = {m.version: m for m in load_migrations()}
        for version in sorted(applied, reverse=True)[: max(steps, 0)]:
            mig = by_version.get(version)
            if mig is None:
                raise RuntimeError(
                    f"migration {version} is applied but not shipped; cannot undo it"
                )
            await conn.execute(mig.down.encode())
            await conn.execute("DELETE FROM schema_migrations WHERE version = %s", (version,))
            undone.append(version)
    return undone


async def status(conn: AsyncConnection[Any]) -> list[MigrationStatus]:
    """Every shipped migration with the time it was applied (None: pending)."""
    async with translate_errors("read the schema status"), conn.transaction():
        applied = await _applied(conn)
    return [MigrationStatus(m.version, m.name, applied.get(m.version)) for m in load_migrations()]


async def reset(conn: AsyncConnection[Any]) -> list[int]:
    """Undo every migration, then apply them all again (DESTROYS the data)."""
    async with translate_errors("reset the schema"), conn.transaction():
        await conn.execute(_LOCK)
        applied = await _applied(conn)
    await rollback(conn, steps=len(applied))
    return await migrate(conn)
