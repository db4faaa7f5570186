"""`llm-policy test`: run policy test suites (policy_core.testsuite), with a JUnit report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
from policy_core.errors import PolicyLoadError
from policy_core.testsuite import (
    CaseResult,
    DiffFormat,
    SuiteError,
    run_suites,
    to_junit_xml,
)

from policy_cli.commands.common import core_error
from policy_cli.errors import CliError, ExitCode
from policy_cli.output import emit
from policy_cli.state import State, output_option, pass_state

__all__ = ["test"]

# Where suites usually live, searched when no PATH is given (else the current directory).
DEFAULT_LOCATIONS = ("tests/policies", "examples/tests")


def _default_paths() -> list[str]:
    found = [p for p in DEFAULT_LOCATIONS if Path(p).is_dir()]
    return found or ["."]


def _print_table(results: Sequence[CaseResult]) -> None:
    for r in results:
        click.echo(f"{'PASS' if r.passed else 'FAIL'} {r.suite} :: {r.name}")
        if r.error:
            click.echo(f"     error: {r.error}")
        for line in r.diff.splitlines():
            click.echo(f"     {line}")
    failed = sum(1 for r in results if not r.passed)
    click.echo(f"{len(results)} cases, {len(results) - failed} passed, {failed} failed")


@click.command()
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@click.option(
    "--junit",
    "junit",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write a JUnit XML report to this file (for CI).",
)
@output_option
@pass_state
def test(state: State, paths: tuple[str, ...], junit: str | None) -> None:
    """Run policy test suites (*.test.yaml files, or directories of them).

    Each case evaluates a context against the suite's policies and compares
    the listed decision fields exactly; failures show a diff of expected vs
    actual. Without PATH: tests/policies and examples/tests, else the
    current directory. Exit 1 when a case fails, 3 when policies do not load.
    """
    fmt: DiffFormat = "json" if state.output == "json" else "yaml"
    try:
        results = run_suites(list(paths) or _default_paths(), diff_format=fmt)
    except SuiteError as exc:
        raise CliError(
            str(exc), ExitCode.USAGE, hint="see docs/authoring.md#testing-policies"
        ) from None
    except PolicyLoadError as exc:
        raise core_error(exc) or CliError(str(exc), ExitCode.INVALID_POLICY) from None
    if not results:
        raise CliError(
            f"no test suite found under {', '.join(paths) or 'the default locations'}",
            ExitCode.USAGE,
            hint="suite files are named *.test.yaml",
        )
    if junit:
        Path(junit).write_text(to_junit_xml(results), encoding="utf-8")
    if state.output == "table":
        _print_table(results)
    else:
        emit(list(results), state.output)
    if not all(r.passed for r in results):
        raise click.exceptions.Exit(int(ExitCode.DENIED))
