"""What the top-level `llm-policy` options hand to every command."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import click

from policy_cli.errors import CliError, ExitCode
from policy_cli.output import OutputFormat
from policy_cli.settings import Settings, SettingsError, load_settings

__all__ = ["State", "pass_state", "run_async", "settings_error"]

T = TypeVar("T")


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
        self, *, output: OutputFormat, environ: Mapping[str, str], overrides: Mapping[str, Any]
    ) -> None:
        self.output: OutputFormat = output
        self.environ = dict(environ)
        self.overrides = dict(overrides)
        self.settings = self.load()

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
