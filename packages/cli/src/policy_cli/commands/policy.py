"""`llm-policy policy ...` and `llm-policy validate`: authoring and administering policies."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import click
from policy_core.errors import PolicyLoadError
from policy_core.language import ContextSchema, ContextSchemaError, load_policies

from policy_cli.backends.base import Backend, Json, PolicyQuery, ValidationOutcome
from policy_cli.backends.validation import issue_json, validate_text
from policy_cli.commands.common import open_backend, policies_option, progress_bar, read_input
from policy_cli.errors import CliError, ExitCode
from policy_cli.output import emit, to_yaml
from policy_cli.state import State, output_option, pass_state, run_async

__all__ = ["policy", "validate_cmd"]

_SUFFIXES = (".yaml", ".yml", ".json")
_LIST_COLUMNS = ("id", "namespace", "revision", "status", "updated_at")


def _source(path: str) -> str:
    """How errors name the input: the path, or <stdin> for `-`."""
    return "<stdin>" if path == "-" else path


def _files(paths: Iterable[str]) -> list[str]:
    """Expand directories into their policy files (sorted); keep files and `-` as given."""
    out: list[str] = []
    for raw in paths:
        path = Path(raw)
        if raw != "-" and path.is_dir():
            out.extend(str(p) for p in sorted(path.rglob("*")) if p.suffix in _SUFFIXES)
        else:
            out.append(raw)
    return out


def _print_outcomes(outcomes: Sequence[ValidationOutcome], fmt: str, strict: bool) -> None:
    if fmt != "table":
        emit(list(outcomes), "json" if fmt == "json" else "yaml")
        return
    for o in outcomes:
        for e in o.errors:
            click.echo(f"{e['file']}:{e['line']}:{e['column']}: error: {e['message']}", err=True)
        for w in o.warnings:
            click.echo(f"{w['file']}:{w['line']}:{w['column']}: warning: {w['message']}", err=True)
        if not o.valid:
            click.echo(f"{o.file}: invalid ({len(o.errors)} error(s))")
        elif strict and o.warnings:
            click.echo(f"{o.file}: failed ({len(o.warnings)} warning(s); --strict)")
        else:
            click.echo(f"{o.file}: ok ({', '.join(o.policies) or 'no policy'})")


def _strict_failure(outcomes: Sequence[ValidationOutcome]) -> str | None:
    """Why --strict fails a run whose documents are all valid, if it does."""
    warned = [o for o in outcomes if o.warnings]
    if not warned or not all(o.valid for o in outcomes):
        return None
    count = sum(len(o.warnings) for o in warned)
    return (
        f"error: {count} warning(s) in {len(warned)} file(s), "
        "and --strict makes warnings fail validation"
    )


def _cross_file_outcome(files: Sequence[str]) -> ValidationOutcome | None:
    """Problems only visible across files (a policy id defined twice), as one outcome."""
    real = [f for f in files if f != "-"]
    if len(real) < 2:
        return None
    try:
        load_policies(real)
    except PolicyLoadError as exc:
        return ValidationOutcome(
            file="(all files)", valid=False, errors=[issue_json(i) for i in exc.issues]
        )
    return None


async def _validate(
    backend: Backend | None,
    files: Sequence[str],
    schema: ContextSchema | None = None,
    integrations: frozenset[str] | None = None,
) -> list[ValidationOutcome]:
    outcomes: list[ValidationOutcome] = []
    for file in files:
        text = read_input(file)
        name = "<stdin>" if file == "-" else file
        outcomes.append(
            await backend.validate(text, name)
            if backend
            else validate_text(text, name, schema, integrations)
        )
    return outcomes


def _context_schema(state: State, flag: str | None) -> ContextSchema | None:
    path = flag or state.settings.context_schema
    if not path:
        return None
    try:
        return ContextSchema.load(path)
    except ContextSchemaError as exc:
        raise CliError(
            str(exc), ExitCode.USAGE, hint="pass a JSON Schema file (JSON or YAML)"
        ) from None


def _run_validate(
    state: State, paths: Sequence[str], strict: bool, remote: bool, schema_file: str | None = None
) -> None:
    files = _files(paths)
    if not files:
        raise CliError("no policy file found", ExitCode.USAGE, hint="pass .yaml/.json files")
    schema = None if remote else _context_schema(state, schema_file)

    async def go() -> list[ValidationOutcome]:
        if not remote:
            return await _validate(None, files, schema, state.settings.integrations)
        async with open_backend(state) as backend:
            return await _validate(backend, files)

    outcomes = run_async(go())
    if all(o.valid for o in outcomes) and not remote:
        extra = _cross_file_outcome(files)
        outcomes += [extra] if extra else []
    _print_outcomes(outcomes, state.output, strict)
    strict_failure = _strict_failure(outcomes) if strict else None
    if strict_failure:
        click.echo(strict_failure, err=True)
    if strict_failure or any(not o.valid for o in outcomes):
        raise click.exceptions.Exit(int(ExitCode.INVALID_POLICY))


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, metavar="FILE|DIR|-...")
@click.option("--strict", is_flag=True, help="Warnings fail too (exit 3).")
@click.option(
    "--context-schema",
    "context_schema",
    metavar="FILE",
    help="JSON Schema of the request context: warn about paths it does not define "
    "(default: LLM_POLICY_CONTEXT_SCHEMA).",
)
@output_option
@pass_state
def validate_cmd(
    state: State, paths: tuple[str, ...], strict: bool, context_schema: str | None
) -> None:
    """Validate policy files locally: every error and warning with file:line:column.

    Exit 3 when a file is invalid. Needs no store and no server.
    """
    _run_validate(state, paths, strict, remote=False, schema_file=context_schema)


@click.group()
def policy() -> None:
    """Create, change, inspect and roll back stored policies."""


@policy.command("validate")
@click.argument("paths", nargs=-1, required=True, metavar="FILE|DIR|-...")
@click.option("--strict", is_flag=True, help="Warnings fail too (exit 3).")
@output_option
@pass_state
def policy_validate(state: State, paths: tuple[str, ...], strict: bool) -> None:
    """Validate policy documents without storing them (on the server with --server)."""
    _run_validate(state, paths, strict, remote=bool(state.settings.server))


def _show_policy(resource: Json, fmt: str) -> None:
    if fmt != "table":
        emit(resource, "json" if fmt == "json" else "yaml")
        return
    head = {k: resource.get(k) for k in ("id", "namespace", "revision", "status", "updated_at")}
    emit(head, "table")
    click.echo("document:")
    for line in to_yaml(resource.get("document", {})).splitlines():
        click.echo("  " + line)


@policy.command("create")
@click.argument("file", metavar="FILE|-")
@output_option
@pass_state
def create(state: State, file: str) -> None:
    """Store a new policy from a YAML or JSON file (revision 1)."""
    text = read_input(file)

    async def go() -> Json:
        async with open_backend(state) as backend:
            return await backend.create_policy(text, _source(file))

    resource = run_async(go())
    emit(resource if state.output != "table" else _summary(resource), state.output)


def _summary(resource: Json) -> Json:
    return {k: resource.get(k) for k in ("id", "namespace", "revision", "status")}


@policy.command("update")
@click.argument("policy_id", metavar="ID")
@click.argument("file", metavar="FILE|-")
@click.option(
    "--revision",
    type=int,
    help="Only update if the current revision is this one (else exit 1); default: current.",
)
@output_option
@pass_state
def update(state: State, policy_id: str, file: str, revision: int | None) -> None:
    """Store a new revision of policy ID from a file."""
    text = read_input(file)

    async def go() -> Json:
        async with open_backend(state) as backend:
            return await backend.update_policy(policy_id, text, _source(file), revision)

    resource = run_async(go())
    emit(resource if state.output != "table" else _summary(resource), state.output)


@policy.command("delete")
@click.argument("policy_id", metavar="ID")
@pass_state
def delete(state: State, policy_id: str) -> None:
    """Soft-delete policy ID (its revisions stay for audit)."""

    async def go() -> None:
        async with open_backend(state) as backend:
            await backend.delete_policy(policy_id)

    run_async(go())
    click.echo(f"deleted {policy_id}", err=True)


@policy.command("list")
@policies_option
@click.option("--namespace")
@click.option("--status", type=click.Choice(["active", "draft", "deprecated"]))
@click.option("--tag")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="Continue after a previous page (its next_cursor).")
@output_option
@pass_state
def list_(state: State, /, policies: tuple[str, ...], **filters: Any) -> None:
    """List policies (current revisions)."""

    async def go() -> Json:
        async with open_backend(state, policies) as backend:
            return await backend.list_policies(PolicyQuery(**filters))

    page = run_async(go())
    if state.output == "table":
        emit(page["items"], "table", columns=_LIST_COLUMNS)
        if page.get("next_cursor"):
            click.echo(f"more: --cursor {page['next_cursor']}", err=True)
    else:
        emit(page, state.output)


@policy.command("get")
@policies_option
@click.argument("policy_id", metavar="ID")
@click.option("--revision", type=int, help="A past revision instead of the current one.")
@output_option
@pass_state
def get(state: State, policies: tuple[str, ...], policy_id: str, revision: int | None) -> None:
    """Show policy ID: its revision, status and document."""

    async def go() -> Json:
        async with open_backend(state, policies) as backend:
            return await backend.get_policy(policy_id, revision)

    _show_policy(run_async(go()), state.output)


@policy.command("status")
@click.argument("policy_id", metavar="ID")
@click.argument("status", type=click.Choice(["active", "draft", "deprecated"]))
@output_option
@pass_state
def status(state: State, policy_id: str, status: str) -> None:
    """Set the status of policy ID (draft policies are evaluated in shadow only)."""

    async def go() -> Json:
        async with open_backend(state) as backend:
            return await backend.set_status(policy_id, status)

    resource = run_async(go())
    emit(resource if state.output != "table" else _summary(resource), state.output)


@policy.command("revisions")
@click.argument("policy_id", metavar="ID")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor")
@output_option
@pass_state
def revisions(state: State, policy_id: str, limit: int, cursor: str | None) -> None:
    """The revision history of policy ID (who, when, what changed)."""

    async def go() -> Json:
        async with open_backend(state) as backend:
            return await backend.revisions(policy_id, limit=limit, cursor=cursor)

    page = run_async(go())
    if state.output == "table":
        cols = ("revision", "author", "created_at", "hash", "summary")
        emit(page["items"], "table", columns=cols)
    else:
        emit(page, state.output)


@policy.command("rollback")
@click.argument("policy_id", metavar="ID")
@click.argument("revision", type=click.IntRange(min=1))
@output_option
@pass_state
def rollback(state: State, policy_id: str, revision: int) -> None:
    """Write a new revision of policy ID equal to REVISION."""

    async def go() -> Json:
        async with open_backend(state) as backend:
            return await backend.rollback(policy_id, revision)

    resource = run_async(go())
    emit(resource if state.output != "table" else _summary(resource), state.output)


_DIRECTORY = click.Path(file_okay=False, path_type=Path)
_PAGE = 1000  # policies per list call when exporting all of them (the API's maximum)


async def _current_documents(backend: Backend, policy_ids: Sequence[str]) -> list[Json]:
    """The current resource of each id (in the order given), or of every policy (by id)."""
    if policy_ids:
        return [await backend.get_policy(policy_id, None) for policy_id in policy_ids]
    resources: list[Json] = []
    cursor: str | None = None
    while True:
        page = await backend.list_policies(PolicyQuery(limit=_PAGE, cursor=cursor))
        resources.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return resources


def _write_documents(resources: Sequence[Json], directory: Path) -> None:
    """One `<id>.yaml` per policy in `directory` (created if needed), with a bar on a TTY."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with progress_bar(len(resources), "exporting") as bar:
            for resource in resources:
                path = directory / f"{resource['id']}.yaml"
                path.write_text(to_yaml(resource["document"]), encoding="utf-8")
                if bar is not None:
                    bar.update(1)
    except OSError as exc:
        raise CliError(
            f"cannot write to {directory}: {exc.strerror}",
            ExitCode.USAGE,
            hint="pass --dir a directory you can write to",
        ) from None
    click.echo(f"exported {len(resources)} policies to {directory}", err=True)


@policy.command("export")
@policies_option
@click.argument("policy_ids", nargs=-1, metavar="[ID...]")
@click.option("--dir", "directory", type=_DIRECTORY, help="Write DIR/<id>.yaml, not stdout.")
@pass_state
def export(
    state: State, policies: tuple[str, ...], policy_ids: tuple[str, ...], directory: Path | None
) -> None:
    """Write the current document of policies ID... (default: all) as YAML.

    The output is what `validate` and `policy create` read: back it up, edit it,
    or load it into another store. On stdout, several policies are separate YAML
    documents (`---`); with --dir, each is its own file.
    """

    async def go() -> list[Json]:
        async with open_backend(state, policies) as backend:
            return await _current_documents(backend, policy_ids)

    resources = run_async(go())
    if directory is not None:
        _write_documents(resources, directory)
        return
    click.echo("---\n".join(to_yaml(r["document"]) for r in resources), nl=False)
