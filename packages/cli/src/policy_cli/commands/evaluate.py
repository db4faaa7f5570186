"""`llm-policy evaluate run|response|batch|history|stats`."""

from __future__ import annotations

import select
import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import IO, Any

import click
import msgspec

from policy_cli.backends.base import Backend, EvaluateRequest, Json, ResponseRequest
from policy_cli.commands.common import (
    open_backend,
    policies_option,
    progress_bar,
    read_input,
    split_policies,
)
from policy_cli.errors import CliError, ExitCode
from policy_cli.output import emit
from policy_cli.state import State, output_option, pass_state, run_async

__all__ = ["evaluate"]

_CHUNK = 200  # batch lines evaluated (and written) together: bounded memory, steady output
_DECISION_ROWS = (
    "decision",
    "allowed",
    "reason",
    "matched_rules",
    "matched_exceptions",
    "warnings",
    "modifications",
    "obligations",
    "errors",
    "policy_set",
    "request_id",
)


@click.group()
def evaluate() -> None:
    """Evaluate requests against policies; read the decision history."""


def _parse_context(text: str, source: str) -> dict[str, Any]:
    try:
        if text.lstrip().startswith("{"):
            value = msgspec.json.decode(text)
        else:
            from ruamel.yaml import YAML

            value = YAML(typ="safe", pure=True).load(text)
    except RecursionError:
        raise CliError(
            f"{source}: the context nests too deeply (a context may nest at most "
            "LLM_POLICY_MAX_CONTEXT_DEPTH levels, 32 by default)",
            ExitCode.USAGE,
        ) from None
    except Exception as exc:  # both parsers raise their own families
        raise CliError(f"{source}: not valid JSON or YAML: {exc}", ExitCode.USAGE) from None
    if not isinstance(value, dict):
        raise CliError(f"{source}: the context must be a JSON/YAML object", ExitCode.USAGE)
    return value


def _show_decision(decision: Json, fmt: str) -> None:
    if fmt != "table":
        emit(decision, "json" if fmt == "json" else "yaml")
        return
    emit({k: decision.get(k) for k in _DECISION_ROWS}, "table")
    for step in decision.get("trace") or []:
        extra = f"  failed: {step['failed']}" if step.get("failed") else ""
        error = f"  error: {step['error']}" if step.get("error") else ""
        kind = step.get("kind", "rule")
        click.echo(
            f"  trace {kind} {step['policy']}/{step['rule']}: {step['result']}{extra}{error}"
        )


@evaluate.command("run")
@click.option(
    "--context",
    "-c",
    "context_path",
    required=True,
    metavar="FILE|-",
    help="The evaluation context (JSON or YAML object); - reads stdin.",
)
@policies_option
@click.option(
    "--policy",
    "policy_ids",
    multiple=True,
    metavar="ID",
    help="Only these policy ids (repeatable).",
)
@click.option("--namespace", help="Only policies of this namespace.")
@click.option("--trace", is_flag=True, help="Explain every evaluated rule.")
@click.option("--dry-run", is_flag=True, help="Count nothing, log nothing.")
@click.option("--request-id", help="Correlation id (generated when absent).")
@output_option
@pass_state
def run(
    state: State,
    context_path: str,
    policies: tuple[str, ...],
    policy_ids: tuple[str, ...],
    namespace: str | None,
    trace: bool,
    dry_run: bool,
    request_id: str | None,
) -> None:
    """Evaluate one context. Exit 0 when allowed, 1 when denied."""
    paths, ids = split_policies(policies)
    ids += list(policy_ids)
    source = "<stdin>" if context_path == "-" else context_path
    request = EvaluateRequest(
        context=_parse_context(read_input(context_path), source),
        policies=ids or None,
        namespace=namespace,
        trace=trace,
        dry_run=dry_run,
        request_id=request_id,
    )

    async def go() -> Json:
        async with open_backend(state, paths) as backend:
            return (await backend.evaluate([request]))[0]

    decision = run_async(go())
    _show_decision(decision, state.output)
    if decision.get("decision") == "deny":
        raise click.exceptions.Exit(int(ExitCode.DENIED))


@evaluate.command("response")
@click.option(
    "--context",
    "-c",
    "context_path",
    required=True,
    metavar="FILE|-",
    help="The request's context (JSON or YAML object); - reads stdin.",
)
@click.option(
    "--response",
    "-r",
    "response_path",
    required=True,
    metavar="FILE",
    help="The model's response: text, finish_reason, model, tool_calls, usage.",
)
@policies_option
@click.option("--policy", "policy_ids", multiple=True, metavar="ID", help="Only these ids.")
@click.option("--namespace", help="Only policies of this namespace.")
@click.option("--trace", is_flag=True, help="Explain every evaluated rule.")
@click.option("--dry-run", is_flag=True, help="Count nothing, log nothing, settle nothing.")
@click.option("--request-id", help="The request's id, which the response decision is linked to.")
@click.option("--reservation", help="The request's reservation id, settled at response.cost.")
@output_option
@pass_state
def response(
    state: State,
    context_path: str,
    response_path: str,
    policies: tuple[str, ...],
    policy_ids: tuple[str, ...],
    namespace: str | None,
    trace: bool,
    dry_run: bool,
    request_id: str | None,
    reservation: str | None,
) -> None:
    """Judge a model's response with the response-phase rules. Exit 0 unless denied (1)."""
    paths, ids = split_policies(policies)
    ids += list(policy_ids)
    if context_path == "-" and response_path == "-":
        raise CliError("only one of --context and --response can read stdin", ExitCode.USAGE)
    request = ResponseRequest(
        context=_parse_context(
            read_input(context_path), "<stdin>" if context_path == "-" else context_path
        ),
        response=_parse_context(
            read_input(response_path), "<stdin>" if response_path == "-" else response_path
        ),
        policies=ids or None,
        namespace=namespace,
        trace=trace,
        dry_run=dry_run,
        request_id=request_id,
        reservation=reservation,
    )

    async def go() -> Json:
        async with open_backend(state, paths) as backend:
            return await backend.evaluate_response(request)

    decision = run_async(go())
    _show_decision(decision, state.output)
    if decision.get("decision") == "deny":
        raise click.exceptions.Exit(int(ExitCode.DENIED))


class _BatchDefaults(msgspec.Struct, frozen=True, kw_only=True):
    policies: list[str] | None
    namespace: str | None
    trace: bool
    dry_run: bool


def _parse_line(line: str, number: int, defaults: _BatchDefaults) -> EvaluateRequest | Json:
    """One request, or an error record `{line, error}` that takes its place in the output."""
    try:
        req = msgspec.json.decode(line, type=EvaluateRequest)
    except msgspec.DecodeError as exc:
        return {"line": number, "error": f"not an evaluate request: {exc}"}
    return msgspec.structs.replace(
        req,
        policies=req.policies if req.policies is not None else defaults.policies,
        namespace=req.namespace if req.namespace is not None else defaults.namespace,
        trace=req.trace or defaults.trace,
        dry_run=req.dry_run or defaults.dry_run,
    )


def _lines(stream: IO[str]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield number, line


def _input_pending(stream: IO[str]) -> bool:
    """Whether more input is ready now; False on an idle pipe (answer what we have)."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # not a real file (tests feed a StringIO)
        return True
    try:
        ready, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


def _chunks(items: Iterator[tuple[int, str]], stream: IO[str]) -> Iterator[list[tuple[int, str]]]:
    """Lines in groups of up to _CHUNK; a group ends early when the producer pauses,
    so that a client writing one request at a time gets each answer at once."""
    chunk: list[tuple[int, str]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= _CHUNK or not _input_pending(stream):
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _evaluate_chunk(
    backend: Backend, chunk: Sequence[tuple[int, str]], defaults: _BatchDefaults
) -> list[Json]:
    parsed = [_parse_line(line, number, defaults) for number, line in chunk]
    requests = [p for p in parsed if isinstance(p, EvaluateRequest)]
    decisions = iter(await backend.evaluate(requests) if requests else [])
    out: list[Json] = []
    for (number, _), p in zip(chunk, parsed, strict=True):
        if isinstance(p, EvaluateRequest):
            answer = next(decisions)
            # A request the backend could not decide (unknown policy): its line, like a
            # malformed one, and the others still decided.
            out.append({"line": number, **answer} if "decision" not in answer else answer)
        else:
            out.append(p)
    return out


@evaluate.command("batch")
@click.argument("file", metavar="FILE.jsonl|-")
@policies_option
@click.option("--namespace", help="Default namespace for lines that name none.")
@click.option("--trace", is_flag=True, help="Explain every evaluated rule.")
@click.option("--dry-run", is_flag=True, help="Count nothing, log nothing.")
@pass_state
def batch(
    state: State,
    file: str,
    policies: tuple[str, ...],
    namespace: str | None,
    trace: bool,
    dry_run: bool,
) -> None:
    """Evaluate one request per line; print one decision per line (JSONL), in order.

    Each line is `{"context": {...}, "policies"?, "namespace"?, "trace"?,
    "dry_run"?, "request_id"?}`. A malformed line, or a request naming an unknown
    policy, yields `{"line": N, "error": ...}` in its place; the others are decided. Exit 1 if any request was denied, 2 if any line was malformed.
    """
    paths, ids = split_policies(policies)
    defaults = _BatchDefaults(
        policies=ids or None, namespace=namespace, trace=trace, dry_run=dry_run
    )
    total = _count_lines(file)
    # stdin belongs to the process: read it, never close it.
    stream: AbstractContextManager[IO[str]] = nullcontext(sys.stdin) if file == "-" else _open(file)
    outcome = {"denied": False, "malformed": False}

    async def go() -> None:
        async with open_backend(state, paths) as backend:
            with stream as lines, progress_bar(total, "evaluating") as bar:
                for chunk in _chunks(_lines(lines), lines):
                    for result in await _evaluate_chunk(backend, chunk, defaults):
                        outcome["denied"] |= result.get("decision") == "deny"
                        outcome["malformed"] |= "error" in result and "decision" not in result
                        click.echo(msgspec.json.encode(result).decode())
                    sys.stdout.flush()
                    if bar is not None:
                        bar.update(len(chunk))

    run_async(go())
    if outcome["malformed"]:
        raise click.exceptions.Exit(int(ExitCode.USAGE))
    if outcome["denied"]:
        raise click.exceptions.Exit(int(ExitCode.DENIED))


def _open(path: str) -> IO[str]:
    try:
        return open(path, encoding="utf-8")  # closed by the command's `with`
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", ExitCode.USAGE) from None


def _count_lines(path: str) -> int | None:
    """Non-blank lines of a file (for the progress bar); None for stdin."""
    if path == "-" or not sys.stderr.isatty():
        return None
    with _open(path) as f:
        return sum(1 for line in f if line.strip())


@evaluate.command("history")
@click.option("--request-id")
@click.option("--policy-id", help="Decisions in which this policy matched.")
@click.option("--decision", type=click.Choice(["allow", "deny", "warn", "modify"]))
@click.option("--since", metavar="RFC3339", help="Inclusive start, e.g. 2026-01-31T00:00:00Z.")
@click.option("--until", metavar="RFC3339", help="Exclusive end.")
@click.option(
    "--shadow-differs",
    is_flag=True,
    default=None,
    help="Only decisions whose shadow (the draft policies) decided otherwise.",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor")
@output_option
@pass_state
def history(state: State, /, limit: int, cursor: str | None, **filters: Any) -> None:
    """Audit records of past decisions, newest first, with their obligations and shadow."""
    query = {k: v for k, v in filters.items() if v is not None}
    if query.pop("shadow_differs", False):
        query["shadow_differs"] = "true"  # the HTTP query's spelling; store mode reads it too

    async def go() -> Json:
        async with open_backend(state) as backend:
            return await backend.history(query, limit=limit, cursor=cursor)

    page = run_async(go())
    if state.output == "table":
        cols = ("created_at", "request_id", "decision", "matched_rules", "reason", "shadow")
        rows = [{**item, "shadow": _shadow_cell(item.get("shadow"))} for item in page["items"]]
        emit(rows, "table", columns=cols)
        if page.get("next_cursor"):
            click.echo(f"more: --cursor {page['next_cursor']}", err=True)
    else:
        emit(page, state.output)


def _shadow_cell(shadow: Json | None) -> str:
    """The shadow's verdict in one table cell: `deny (draft/r1)`, or empty without a shadow."""
    if not shadow:
        return ""
    rules = ", ".join(shadow.get("matched_rules") or ())
    return f"{shadow['decision']} ({rules})" if rules else str(shadow["decision"])


@evaluate.command("stats")
@click.option("--days", type=click.IntRange(1, 366), default=7, show_default=True)
@output_option
@pass_state
def stats(state: State, days: int) -> None:
    """Decision counts (by decision, policy, rule) and latency percentiles."""

    async def go() -> Json:
        async with open_backend(state) as backend:
            return await backend.stats(days)

    emit(run_async(go()), state.output)


@evaluate.command("verify")
@output_option
@pass_state
def verify(state: State) -> None:
    """Check the decision log's hash chains; name the first broken or missing link.

    Reads the configured store (PostgreSQL). Exit 0 when every chain is whole,
    1 when a record was edited, deleted, moved or duplicated, 2 for a mode that
    keeps no chains, 4 when the store is unreachable.
    """

    async def go() -> Json:
        async with open_backend(state) as backend:
            total = await backend.chain_size()
            with progress_bar(total, "verifying") as bar:
                return await backend.verify(bar.update if bar is not None else None)

    report = run_async(go())
    if state.output == "table":
        _show_chain_report(report)
    else:
        emit(report, state.output)
    if not report["ok"]:
        raise click.exceptions.Exit(int(ExitCode.DENIED))


def _show_chain_report(report: Json) -> None:
    emit(
        {k: report[k] for k in ("ok", "records", "chained", "unchained", "writers")}
        | {"problems": report["problem_count"]},
        "table",
    )
    first = report["first"]
    if first is not None:
        click.echo(f"first broken link: {first['kind']}: {first['message']}")
        if first.get("request_id"):
            click.echo(f"  request_id: {first['request_id']}")
    for problem in report["problems"][1:]:
        click.echo(f"also: {problem['kind']}: {problem['message']}")
