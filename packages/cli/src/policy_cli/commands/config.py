"""`llm-policy config show|check`: the effective settings, secrets masked."""

from __future__ import annotations

import click

from policy_cli.output import emit
from policy_cli.settings import env_name, masked
from policy_cli.state import State, output_option, pass_state

__all__ = ["config"]


@click.group()
def config() -> None:
    """Inspect the settings (LLM_POLICY_* variables and flags)."""


@config.command("show")
@output_option
@pass_state
def show(state: State) -> None:
    """Print the effective settings; secrets are shown as ***."""
    values = masked(state.settings)
    if state.output == "table":
        rows = [
            {"variable": env_name(k), "value": v, "source": _source(state, k)}
            for k, v in values.items()
        ]
        emit(rows, "table", columns=("variable", "value", "source"))
    else:
        emit(values, state.output)


def _source(state: State, name: str) -> str:
    """Where a value came from: a flag, the environment, or the default."""
    if state.overrides.get(name) is not None:
        return "flag"
    if state.environ.get(env_name(name)):
        return "environment"
    return "default"


@config.command("check")
@pass_state
def check(state: State) -> None:
    """Validate the settings as `llm-policy serve` would; exit 2 listing every problem."""
    state.load(serving=True)
    click.echo("settings ok", err=True)
