"""Exit codes and the one error type commands raise to end with a message and a code."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import click

__all__ = ["CliError", "ExitCode"]


class ExitCode(IntEnum):
    """The documented exit codes of `llm-policy` (docs/cli.md)."""

    OK = 0
    DENIED = 1  # also: a policy test failed
    USAGE = 2
    INVALID_POLICY = 3
    UNREACHABLE = 4


class CliError(Exception):
    """An expected failure, reported by `show` and ending the process with `exit_code`.

    The top-level command group catches it (see `policy_cli.main`).
    """

    def __init__(
        self, message: str, code: ExitCode, hint: str | None = None, data: Any = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = int(code)
        self.hint = hint
        self.data = data  # structured detail (e.g. a server's problem document)

    def show(self) -> None:
        """Each line of the message on stderr as `error: ...`, then `hint: ...`."""
        for line in self.message.splitlines() or [""]:
            click.echo(f"error: {line}", err=True)
        if self.hint:
            click.echo(f"hint: {self.hint}", err=True)
