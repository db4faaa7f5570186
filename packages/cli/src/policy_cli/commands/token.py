"""`llm-policy token`: mint a JWT signed with the configured HS256 secret.

In development (LLM_POLICY_ENV=development) the fixed development secret is
used when none is configured, which is how `make run` and the README get a
working admin token without any setup.
"""

from __future__ import annotations

from collections.abc import Sequence

import click
from policy_core.auth import mint_token

from policy_cli.errors import CliError, ExitCode
from policy_cli.output import emit
from policy_cli.settings import Settings
from policy_cli.state import State, output_option, pass_state

__all__ = ["DEFAULT_ROLES", "DEFAULT_SUBJECT", "DEFAULT_TTL_SECONDS", "token", "token_for"]

ROLES = ("admin", "policy-admin", "evaluator", "auditor")

#: `llm-policy token` without options and the token `serve` prints in
#: development are one token: this subject, these roles, this lifetime.
DEFAULT_SUBJECT = "admin"
DEFAULT_ROLES: tuple[str, ...] = ("admin",)
DEFAULT_TTL_SECONDS = 86_400


def token_for(
    settings: Settings,
    *,
    subject: str = DEFAULT_SUBJECT,
    roles: Sequence[str] = DEFAULT_ROLES,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
) -> str:
    """A token the server of these settings accepts; CliError when it has no HS256 secret."""
    secret = settings.effective_jwt_secret()
    if secret is None:
        raise CliError(
            "no HS256 secret to sign with",
            ExitCode.USAGE,
            hint="set LLM_POLICY_JWT_SECRET (as the server has it), "
            "or LLM_POLICY_ENV=development for the development secret",
        )
    return mint_token(
        secret,
        subject=subject,
        roles=roles,
        ttl_seconds=ttl_seconds,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )


@click.command()
@click.option("--sub", "subject", default=DEFAULT_SUBJECT, show_default=True, help="The principal.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(ROLES),
    help="Role (repeatable); default: admin.",
)
@click.option(
    "--ttl",
    type=click.IntRange(1),
    default=DEFAULT_TTL_SECONDS,
    show_default=True,
    help="Lifetime in seconds.",
)
@output_option
@pass_state
def token(state: State, subject: str, roles: tuple[str, ...], ttl: int) -> None:
    """Print a JWT for the HTTP/gRPC APIs, signed with LLM_POLICY_JWT_SECRET.

    With LLM_POLICY_ENV=development and no secret configured, signs with the
    development secret that `llm-policy serve` uses in development.
    """
    roles = roles or DEFAULT_ROLES
    jwt = token_for(state.settings, subject=subject, roles=roles, ttl_seconds=ttl)
    if state.output == "table":
        click.echo(jwt)
    else:
        emit({"token": jwt, "sub": subject, "roles": list(roles)}, state.output)
