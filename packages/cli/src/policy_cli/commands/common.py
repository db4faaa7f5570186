"""Helpers shared by the commands: choosing the mode, reading inputs, mapping errors."""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import click
from policy_core.errors import (
    ComplianceUnavailable,
    PolicyAlreadyExists,
    PolicyLoadError,
    PolicyNotCompliant,
    PolicyNotFound,
    RevisionConflict,
    RevisionNotFound,
    StoreUnavailable,
)

from policy_cli.backends.base import Backend
from policy_cli.errors import CliError, ExitCode
from policy_cli.state import State

__all__ = [
    "core_error",
    "open_backend",
    "policies_option",
    "progress_bar",
    "read_input",
    "split_policies",
]

F = TypeVar("F", bound=Callable[..., Any])

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def policies_option(func: F) -> F:
    """`--policies PATH` (repeatable): work on local files instead of a store or server."""
    return click.option(
        "--policies",
        "-p",
        "policies",
        multiple=True,
        metavar="PATH",
        help="Policy file or directory (repeatable): evaluate locally, no server or database.",
    )(func)


def progress_bar(total: int | None, label: str) -> AbstractContextManager[Any]:
    """A progress bar on stderr when it is a terminal (never mixed into stdout), else None."""
    if not sys.stderr.isatty():
        return nullcontext(None)
    return click.progressbar(
        length=total or 0,
        label=label,
        file=sys.stderr,
        show_pos=True,
        show_percent=total is not None,
    )


def split_policies(values: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split `--policies` values into local paths and policy ids.

    A value naming an existing file or directory is a path; otherwise a
    comma-separated list of policy ids (`--policies p1,p2` restricts the
    evaluation to those ids, as the HTTP API's `policies` field does).
    """
    paths: list[str] = []
    ids: list[str] = []
    for value in values:
        if Path(value).exists():
            paths.append(value)
            continue
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts or not all(_ID.match(p) for p in parts):
            raise CliError(
                f"--policies {value!r}: no such file or directory, and not a list of policy ids",
                ExitCode.USAGE,
                hint="pass a policy file/directory, or ids separated by commas",
            )
        ids.extend(parts)
    return paths, ids


def read_input(path: str) -> str:
    """The text of a file, or of stdin for `-`."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", ExitCode.USAGE) from None
    except UnicodeDecodeError as exc:
        raise CliError(
            f"{path}: not UTF-8 text (invalid byte at offset {exc.start})", ExitCode.USAGE
        ) from None


def core_error(exc: Exception) -> CliError | None:
    """The CLI error (and exit code) for an error of the core's vocabulary, else None."""
    match exc:
        case PolicyLoadError():
            return CliError(
                str(exc),
                ExitCode.INVALID_POLICY,
                hint="fix the problems above (`llm-policy validate FILE` lists them all)",
            )
        case StoreUnavailable():
            return CliError(
                f"the policy store is unreachable: {exc}",
                ExitCode.UNREACHABLE,
                hint="check LLM_POLICY_DATABASE_URL and that PostgreSQL is up "
                "(`llm-policy db status`)",
            )
        case PolicyNotFound() | RevisionNotFound() | PolicyAlreadyExists():
            return CliError(str(exc), ExitCode.USAGE)
        case RevisionConflict():
            return CliError(str(exc), ExitCode.DENIED)
        case PolicyNotCompliant():
            return CliError(
                str(exc),
                ExitCode.INVALID_POLICY,
                hint="change the policy so that Governance's compliance check passes",
            )
        case ComplianceUnavailable():
            return CliError(
                str(exc),
                ExitCode.UNREACHABLE,
                hint="check LLM_POLICY_GOVERNANCE_URL and that Governance is up "
                "(`llm-policy integrations status`)",
            )
    return None


@asynccontextmanager
async def open_backend(
    state: State, policies: Sequence[str] = (), *, local_only: bool = False
) -> AsyncIterator[Backend]:
    """The backend of this invocation: local files, a server, or the configured store.

    Errors of the core raised inside the block leave as CliErrors with their exit code.
    """
    settings = state.settings
    try:
        if policies:
            from policy_cli.backends.local import LocalBackend

            yield LocalBackend(policies, default_decision=settings.default_decision)
        elif local_only:
            raise CliError("this command needs --policies PATH", ExitCode.USAGE, hint="see --help")
        elif settings.server:
            from policy_cli.backends.remote import RemoteBackend

            yield RemoteBackend(settings.server, token=settings.token, api_key=settings.api_key)
        else:
            from policy_cli.backends.store import store_backend

            async with store_backend(settings) as backend:
                yield backend
    except CliError:
        raise
    except Exception as exc:
        mapped = core_error(exc)
        if mapped is None:
            raise
        raise mapped from None
