"""SQL statements kept in sibling .sql files, read once."""

from __future__ import annotations

from functools import cache
from importlib import resources

__all__ = ["sql"]


@cache
def sql(name: str) -> bytes:
    """The text of `sql/<name>.sql` (bytes: psycopg takes those as a query without formatting)."""
    return (resources.files("policy_postgres") / "sql" / f"{name}.sql").read_bytes()
