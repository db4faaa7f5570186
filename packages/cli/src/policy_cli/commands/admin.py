"""`llm-policy apikey create|list|revoke`: service API keys (stored hashed, shown once)."""

from __future__ import annotations

import click

from policy_cli.backends.base import Json
from policy_cli.commands.common import open_backend
from policy_cli.commands.token import ROLES
from policy_cli.output import emit
from policy_cli.state import State, output_option, pass_state, run_async

__all__ = ["apikey"]

_COLUMNS = ("id", "name", "prefix", "roles", "created_at", "revoked_at")


@click.group()
def apikey() -> None:
    """Manage the API keys that services use (X-API-Key)."""


@apikey.command("create")
@click.argument("name")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(ROLES),
    help="Role granted to the key (repeatable).",
)
@output_option
@pass_state
def create(state: State, name: str, roles: tuple[str, ...]) -> None:
    """Create a key named NAME; the key itself is printed once, store it now."""

    async def go() -> Json:
        async with open_backend(state) as backend:
            return await backend.create_api_key(name, roles)

    created = run_async(go())
    if state.output == "table":
        click.echo(created["key"])
        click.echo(
            f"created API key {created.get('id')} ({', '.join(roles)}); it is shown only this once",
            err=True,
        )
    else:
        emit(created, state.output)


@apikey.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@output_option
@pass_state
def list_(state: State, include_revoked: bool) -> None:
    """List keys (never the keys themselves: their prefix only)."""

    async def go() -> list[Json]:
        async with open_backend(state) as backend:
            return await backend.list_api_keys(include_revoked)

    emit(run_async(go()), state.output, columns=_COLUMNS if state.output == "table" else None)


@apikey.command("revoke")
@click.argument("key_id", metavar="ID")
@pass_state
def revoke(state: State, key_id: str) -> None:
    """Revoke key ID: requests using it are refused from now on."""

    async def go() -> None:
        async with open_backend(state) as backend:
            await backend.revoke_api_key(key_id)

    run_async(go())
    click.echo(f"revoked {key_id}", err=True)
