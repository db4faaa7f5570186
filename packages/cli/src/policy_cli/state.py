"""What the top-level `llm-policy` options hand to every command."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar, cast

import click

from policy_cli.errors import CliError, ExitCode
from policy_cli.output import OutputFormat
from policy_cli.settings import Settings, SettingsError, load_settings

__all__ = ["State", "output_option", "pass_state", "run_async", "settings_error"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_OUTPUT = "llm_policy.output"  # key in click's context meta, shared by a group and its commands


def _remember_output(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """The last `-o` given wins, whether it stood before or after the subcommand."""
    if value is not None:
        ctx.meta[_OUTPUT] = value


def output_option(func: F) -> F:
    """`-o/--output table|json|yaml`: on the root group and on every command that prints."""
    return click.option(
        "--output",
        "-o",
        type=click.Choice(["table", "json", "yaml"]),
        default=None,
        expose_value=False,
        callback=_remember_output,
        help="How results are printed (default: table).",
    )(func)


def settings_error(exc: SettingsError) -> CliError:
    """One `error:` line per settings problem, exit 2."""
    return CliError(
        "\n".join(exc.problems),
        ExitCode.USAGE,
        hint="fix the variables or flags above (docs/operations.md lists every setting)",
    )


class State:
    """The global options and the environment, read once when the command starts."""

    def __init__(
        self,
        *,
        meta: Mapping[str, Any],
        environ: Mapping[str, str],
        overrides: Mapping[str, Any],
    ) -> None:
        self._meta = meta  # the click context's meta: where `output_option` writes
        self.environ = dict(environ)
        self.overrides = dict(overrides)
        self.settings = self.load()

    @property
    def output(self) -> OutputFormat:
        """`-o/--output`, wherever on the command line it was given."""
        return cast(OutputFormat, self._meta.get(_OUTPUT, "table"))

    def load(self, *, serving: bool = False, **flags: Any) -> Settings:
        """Settings from the environment, the global flags and `flags` (which win)."""
        try:
            return load_settings(self.environ, {**self.overrides, **flags}, serving=serving)
        except SettingsError as exc:
            raise settings_error(exc) from None


pass_state = click.make_pass_decorator(State)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to completion on a fresh event loop (commands are synchronous)."""
    return asyncio.run(coro)
