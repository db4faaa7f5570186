"""`llm-policy integrations status`: each configured integration's health and breaker state."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import click
from policy_core.memory import SystemClock

from policy_cli.output import emit
from policy_cli.state import State, output_option, pass_state, run_async

__all__ = ["integrations"]

_ALL = ("shield", "costops", "governance", "edge")


@click.group()
def integrations() -> None:
    """Inspect the integrations (LLM_POLICY_{SHIELD,COSTOPS,GOVERNANCE,EDGE}_URL)."""


@integrations.command("status")
@output_option
@pass_state
def status(state: State) -> None:
    """Ask each configured integration's GET /health; print its URL, health and breaker.

    Exit 1 when a configured integration does not answer (an integration that
    is not configured is listed as such and is not a failure).
    """
    from policy_cli import wiring

    settings = state.settings

    async def go() -> dict[str, dict[str, Any]]:
        async with AsyncExitStack() as stack:
            built = await wiring.integrations(settings, SystemClock(), stack)
            return await built.report()

    report = run_async(go())
    rows: list[dict[str, Any]] = []
    for name in _ALL:
        entry = report.get(name)
        if entry is None:
            configured = bool(getattr(settings, f"{name}_url"))
            rows.append(
                {
                    "integration": name,
                    "url": getattr(settings, f"{name}_url") or "",
                    "configured": configured,
                    "healthy": None,
                    "breaker": None,
                }
            )
            continue
        rows.append(
            {
                "integration": name,
                "url": entry["url"],
                "configured": True,
                "healthy": entry["healthy"],
                "breaker": entry["breaker"],
            }
        )
    if state.output == "table":
        emit(rows, "table", columns=("integration", "configured", "healthy", "breaker", "url"))
    else:
        emit(rows, state.output)
    if any(r["configured"] and r["healthy"] is False for r in rows):
        raise click.exceptions.Exit(1)
