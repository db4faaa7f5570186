"""`llm-policy db migrate|status|rollback|reset`: the PostgreSQL schema."""

from __future__ import annotations

from typing import Any

import click

from policy_cli.commands.common import core_error
from policy_cli.errors import CliError, ExitCode
from policy_cli.output import emit
from policy_cli.state import State, output_option, pass_state, run_async

__all__ = ["db"]


def _run(state: State, action: str, **kw: Any) -> Any:
    """Run one migrations function on a connection to the deployment's database."""
    settings = state.settings
    if settings.server:
        # Never let `--server X db reset` act on the local database by surprise.
        raise CliError(
            "db commands act on the database directly; they do not go through --server",
            ExitCode.USAGE,
            hint="run them where LLM_POLICY_DATABASE_URL (or the data dir) is, without --server",
        )
    if settings.deployment == "memory":
        raise CliError(
            "the memory deployment has no database",
            ExitCode.USAGE,
            hint="set LLM_POLICY_DEPLOYMENT=single (embedded or LLM_POLICY_DATABASE_URL) or cluster",
        )

    async def go() -> Any:
        import policy_postgres

        from policy_cli.wiring import database_connection

        async with database_connection(settings) as conn:
            return await getattr(policy_postgres, action)(conn, **kw)

    try:
        return run_async(go())
    except CliError:
        raise
    except Exception as exc:
        mapped = core_error(exc)
        if mapped is None:
            raise
        raise mapped from None


@click.group()
def db() -> None:
    """Manage the database schema (LLM_POLICY_DATABASE_URL, or the embedded server)."""


@db.command("migrate")
@output_option
@pass_state
def migrate(state: State) -> None:
    """Apply every pending migration (safe to run twice, and from several hosts)."""
    applied: list[int] = _run(state, "migrate")
    _report(state, "applied", applied)


@db.command("status")
@output_option
@pass_state
def status(state: State) -> None:
    """Every migration, applied (with its time) or pending."""
    rows = [
        {
            "version": s.version,
            "name": s.name,
            "state": "applied" if s.applied_at else "pending",
            "applied_at": s.applied_at.isoformat() if s.applied_at else None,
        }
        for s in _run(state, "status")
    ]
    emit(rows, state.output)


@db.command("rollback")
@click.option("--steps", type=click.IntRange(min=1), default=1, show_default=True)
@output_option
@pass_state
def rollback(state: State, steps: int) -> None:
    """Undo the last STEPS applied migrations."""
    undone: list[int] = _run(state, "rollback", steps=steps)
    _report(state, "rolled back", undone)


@db.command("reset")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@output_option
@pass_state
def reset(state: State, yes: bool) -> None:
    """Drop every table and migrate again: DESTROYS policies, history and keys."""
    if not yes:
        target = "the embedded database" if not state.settings.database_url else "the database"
        click.confirm(
            f"This deletes every policy, decision and API key in {target}. Continue?",
            abort=True,
            err=True,
        )
    applied: list[int] = _run(state, "reset")
    _report(state, "reset; applied", applied)


def _report(state: State, verb: str, versions: list[int]) -> None:
    if state.output == "table":
        listed = ", ".join(f"{v:04d}" for v in versions) or "nothing"
        click.echo(f"{verb}: {listed}")
    else:
        emit({"versions": versions}, state.output)
