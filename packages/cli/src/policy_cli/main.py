"""`llm-policy`: the admin CLI of the LLM Policy Engine (see docs/cli.md)."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from policy_cli.commands import (
    admin,
    config,
    db,
    edge,
    evaluate,
    integrations,
    policy,
    serve,
    testing,
    token,
)
from policy_cli.errors import CliError, ExitCode
from policy_cli.state import State, output_option

__all__ = ["main"]

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Cli(click.Group):
    """The root group: turns a CliError anywhere below into its message and exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as exc:
            exc.show()
            ctx.exit(exc.exit_code)
        except BrokenPipeError:
            # The reader went away (`... | head`): stop quietly, as Unix tools do.
            # stdout is pointed at /dev/null so the final flush cannot fail again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(0)
        except (ConnectionError, TimeoutError) as exc:
            # A backend that vanished mid-command, below the adapters' own translation.
            CliError(
                f"lost the connection to a backend: {exc}",
                ExitCode.UNREACHABLE,
                hint="check that the database, Redis or server is up, then retry",
            ).show()
            ctx.exit(int(ExitCode.UNREACHABLE))


@click.group(cls=_Cli, context_settings=_CONTEXT)
@output_option
@click.option(
    "--server",
    metavar="URL",
    help="Talk to a running server (LLM_POLICY_SERVER) instead of the configured store.",
)
@click.option("--token", metavar="JWT", help="Bearer token for --server (LLM_POLICY_TOKEN).")
@click.option("--api-key", metavar="KEY", help="API key for --server (LLM_POLICY_API_KEY).")
@click.version_option(package_name="llm-policy", prog_name="llm-policy")
@click.pass_context
def main(
    ctx: click.Context,
    server: str | None,
    token: str | None,
    api_key: str | None,
) -> None:
    """Validate, test, evaluate and administer LLM policies.

    Commands work on local policy files (--policies PATH), on the configured
    store (LLM_POLICY_* settings), or against a running server (--server URL).
    Exit codes: 0 ok/allowed, 1 denied or failed test, 2 usage error,
    3 invalid policy, 4 backend unreachable.
    """
    overrides = {"server": server, "token": token, "api_key": api_key}
    ctx.obj = State(meta=ctx.meta, environ=os.environ, overrides=overrides)


main.add_command(policy.validate_cmd, name="validate")
main.add_command(policy.policy)
main.add_command(evaluate.evaluate)
main.add_command(testing.test)
main.add_command(config.config)
main.add_command(admin.apikey)
main.add_command(db.db)
main.add_command(edge.edge)
main.add_command(serve.serve)
main.add_command(serve.grpc)
main.add_command(token.token)
main.add_command(integrations.integrations)
