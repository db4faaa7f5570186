"""Exit codes and the one error type commands raise to end with a message and a code."""

from __future__ import annotations

from enum import IntEnum
from typing import IO, Any

import click

__all__ = ["CliError", "ExitCode"]


class ExitCode(IntEnum):
    """The documented exit codes of `llm-policy` (docs/cli.md)."""

    OK = 0
    DENIED = 1  # also: a policy test failed
    USAGE = 2
    INVALID_POLICY = 3
    UNREACHABLE = 4


class CliError(click.ClickException):
    """An expected failure: each line of the message goes to stderr as `error: ...`,
    then the hint (what to do about it), then the process exits with `code`."""

    def __init__(
        self, message: str, code: ExitCode, hint: str | None = None, data: Any = None
    ) -> None:
        super().__init__(message)
        self.exit_code = int(code)
        self.hint = hint
        self.data = data  # structured detail (e.g. a server's problem document)

    def show(self, file: IO[Any] | None = None) -> None:
        err = file if file is not None else click.get_text_stream("stderr")
        for line in self.message.splitlines() or [""]:
            click.echo(f"error: {line}", file=err)
        if self.hint:
            click.echo(f"hint: {self.hint}", file=err)
