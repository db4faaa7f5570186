"""`llm-policy edge sync`: push the whole active policy set to the Edge agent."""

from __future__ import annotations

from typing import Any

import click
from policy_core.errors import IntegrationError

from policy_cli.commands.common import core_error
from policy_cli.errors import CliError, ExitCode
from policy_cli.output import emit
from policy_cli.state import State, output_option, pass_state, run_async

__all__ = ["edge"]


@click.group()
def edge() -> None:
    """Distribute policies to the LLM-Edge-Agent (LLM_POLICY_EDGE_URL)."""


@edge.command("sync")
@output_option
@pass_state
def sync(state: State) -> None:
    """Push every active policy of the store to the Edge agent at once (POST /api/v1/sync).

    Every policy change is deployed to the agent as it happens; this command
    sends the whole set, e.g. to a new agent or after it lost its state.
    """
    settings = state.settings
    if settings.server:
        raise CliError(
            "edge sync reads the policy store directly; it does not go through --server",
            ExitCode.USAGE,
            hint="run it where the store is configured (LLM_POLICY_DATABASE_URL or the data dir)",
        )
    if not settings.edge_url:
        raise CliError(
            "no Edge agent is configured",
            ExitCode.USAGE,
            hint="set LLM_POLICY_EDGE_URL to the agent's base URL",
        )

    async def go() -> dict[str, Any]:
        from policy_cli.bootstrap import bootstrap

        async with bootstrap(settings) as services:
            pushed = await services.policies.edge_sync()
            return {
                "policy_set": services.holder.current.policy_set(),
                "policies": [f"{r.id}@{r.revision}" for r in pushed],
            }

    try:
        result = run_async(go())
    except IntegrationError as exc:
        raise CliError(
            f"the Edge agent did not acknowledge the sync: {exc}",
            ExitCode.UNREACHABLE,
            hint="check LLM_POLICY_EDGE_URL and that the agent is up",
        ) from None
    except CliError:
        raise
    except Exception as exc:
        mapped = core_error(exc)
        if mapped is None:
            raise
        raise mapped from None
    if state.output == "table":
        listed = ", ".join(result["policies"]) or "no active policy"
        click.echo(f"synced {len(result['policies'])} policies to the edge: {listed}")
    else:
        emit(result, state.output)
