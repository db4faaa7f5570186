"""`llm-policy token`: mint a JWT signed with the configured HS256 secret.

In development (LLM_POLICY_ENV=development) the fixed development secret is
used when none is configured, which is how `make run` and the README get a
working admin token without any setup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Sequence

import click

from policy_cli.errors import CliError, ExitCode
from policy_cli.output import emit
from policy_cli.settings import Settings
from policy_cli.state import State, output_option, pass_state

__all__ = ["mint_token", "token"]

ROLES = ("admin", "policy-admin", "evaluator", "auditor")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_token(
    secret: str,
    *,
    subject: str,
    roles: Sequence[str],
    ttl_seconds: int,
    issuer: str | None = None,
    audience: str | None = None,
    now: float | None = None,
) -> str:
    """An HS256 JWT with `sub`, `roles`, `iat`, `exp` (and `iss`/`aud` when given)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "sub": subject,
        "roles": list(roles),
        "iat": issued,
        "exp": issued + ttl_seconds,
    }
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = ".".join(
        _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def token_for(settings: Settings, *, subject: str, roles: Sequence[str], ttl_seconds: int) -> str:
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
@click.option("--sub", "subject", default="admin", show_default=True, help="The principal.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(ROLES),
    help="Role (repeatable); default: admin.",
)
@click.option(
    "--ttl", type=click.IntRange(1), default=86_400, show_default=True, help="Lifetime in seconds."
)
@output_option
@pass_state
def token(state: State, subject: str, roles: tuple[str, ...], ttl: int) -> None:
    """Print a JWT for the HTTP/gRPC APIs, signed with LLM_POLICY_JWT_SECRET.

    With LLM_POLICY_ENV=development and no secret configured, signs with the
    development secret that `llm-policy serve` uses in development.
    """
    jwt = token_for(state.settings, subject=subject, roles=roles or ("admin",), ttl_seconds=ttl)
    if state.output == "table":
        click.echo(jwt)
    else:
        emit({"token": jwt, "sub": subject, "roles": list(roles or ("admin",))}, state.output)
