"""Rendering of command results as a table, JSON or YAML (`--output`)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import click
import msgspec

__all__ = ["OutputFormat", "cell", "emit", "to_json", "to_yaml"]

OutputFormat = Literal["table", "json", "yaml"]


def to_json(data: Any, *, indent: int = 2) -> str:
    """JSON text of any msgspec-encodable value (Structs included)."""
    raw = msgspec.json.encode(data)
    return (msgspec.json.format(raw, indent=indent) if indent else raw).decode()


def to_yaml(data: Any) -> str:
    """Block-style YAML of any msgspec-encodable value."""
    from ruamel.yaml import YAML  # imported lazily: only YAML output needs it

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.representer.sort_base_mapping_type_on_output = False  # keep the fields in order
    buf = io.StringIO()
    yaml.dump(msgspec.to_builtins(data), buf)
    return buf.getvalue()


def cell(value: Any) -> str:
    """One table cell: lists joined, maps as compact JSON, null as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value) if value else "-"
    if isinstance(value, Mapping):
        return to_json(value, indent=0) if value else "-"
    return str(value)


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    header = [c.upper() for c in columns]
    widths = [max(len(x) for x in col) for col in zip(header, *cells, strict=False)]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *cells]
    ]
    return "\n".join(lines)


def _pairs(data: Mapping[str, Any]) -> str:
    width = max((len(k) for k in data), default=0)
    return "\n".join(f"{k.ljust(width)}  {cell(v)}" for k, v in data.items())


def emit(data: Any, fmt: OutputFormat, *, columns: Sequence[str] | None = None) -> None:
    """Print `data` on stdout in the chosen format.

    For `table`, a list of mappings becomes rows (the given `columns`, else the
    keys of the first row) and a mapping becomes aligned `key  value` lines.
    """
    if fmt == "json":
        click.echo(to_json(data))
        return
    if fmt == "yaml":
        click.echo(to_yaml(data), nl=False)
        return
    plain = msgspec.to_builtins(data)
    if isinstance(plain, list | tuple):
        if not plain:
            click.echo("(none)")
            return
        cols = list(columns or plain[0].keys())
        click.echo(_table(plain, cols))
    elif isinstance(plain, Mapping):
        click.echo(_pairs(plain if columns is None else {c: plain.get(c) for c in columns}))
    else:
        click.echo(cell(plain))
