"""Reading YAML/JSON text with positions, and mapping offsets inside scalars back to the file.

ruamel.yaml's round-trip loader keeps the line and column of every key,
value and item; `Located` carries them next to the plain value so that the
schema pass can report `file:line:column` for anything it rejects.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from policy_core.errors import Issue

__all__ = [
    "FLOW_TOO_DEEP",
    "MAX_DOCUMENT_DEPTH",
    "MAX_DOCUMENT_VALUES",
    "SourceText",
    "oversized",
    "parse_documents",
    "position",
    "to_plain",
    "unwrap",
]

# Hostile documents: a YAML alias bomb (`&a [*b, *b, ...]` a few levels deep) is
# small text that expands to billions of values once copied, and deep nesting
# exhausts the parser's stack. A policy needs neither; the loader refuses both
# before anything walks or copies the tree. ruamel's pure-Python parser takes
# about 0.2 ms per value on this 2-core machine, so the value limit also bounds the
# CPU one document costs (20,000 values: about 4 s).
MAX_DOCUMENT_DEPTH = 100
MAX_DOCUMENT_VALUES = 20_000


class SourceText:
    """The text of one file and its name, for positions."""

    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.lines = text.split("\n")

    def issue(
        self, line0: int, col0: int, message: str, path: str = "", *, warn: bool = False
    ) -> Issue:
        return Issue(
            file=self.file,
            line=line0 + 1,
            column=col0 + 1,
            message=message,
            severity="warning" if warn else "error",
            path=path,
        )

    def scalar_offset(self, line0: int, col0: int, offset: int) -> tuple[int, int]:
        """0-based file position of character `offset` of the scalar that starts at (line0, col0)."""
        if line0 >= len(self.lines) or col0 >= len(self.lines[line0]):
            return line0, col0
        indicator = self.lines[line0][col0]
        if indicator in "|>":
            return self._block_offset(line0, offset)
        if indicator in "'\"":
            return self._quoted_offset(line0, col0 + 1, offset, indicator)
        return self._quoted_offset(line0, col0, offset, "")

    def _block_offset(self, line0: int, offset: int) -> tuple[int, int]:
        first = line0 + 1
        while first < len(self.lines) and not self.lines[first].strip():
            first += 1
        if first >= len(self.lines):
            return line0, 0
        indent = len(self.lines[first]) - len(self.lines[first].lstrip(" "))
        # Offsets count characters of the folded value; for `|` blocks lines map one to one.
        line, _col, remaining = first, indent, offset
        while line < len(self.lines):
            width = len(self.lines[line]) - indent
            if remaining <= width:
                return line, indent + remaining
            remaining -= width + 1
            line += 1
        return line0, 0

    def _quoted_offset(self, line: int, col: int, offset: int, quote: str) -> tuple[int, int]:
        count = 0
        while line < len(self.lines):
            raw = self.lines[line]
            while col < len(raw):
                if count >= offset:
                    return line, col
                ch = raw[col]
                if quote == "'" and raw.startswith("''", col):
                    col += 2
                elif quote == '"' and ch == "\\" and col + 1 < len(raw):
                    col += {"x": 4, "u": 6, "U": 10}.get(raw[col + 1], 2)
                else:
                    col += 1
                count += 1
            if count >= offset:
                return line, col
            # A line break inside a flow scalar folds to one space.
            count += 1
            line += 1
            col = (
                len(self.lines[line]) - len(self.lines[line].lstrip())
                if line < len(self.lines)
                else 0
            )
        return line, col


def parse_documents(src: SourceText) -> tuple[list[Any], list[Issue]]:
    """Every document of the text (a top-level list counts as several); syntax errors as issues."""
    # deferred: ruamel.yaml is the costliest import of the loader; importing the language stays cheap
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError

    if FLOW_TOO_DEEP.search(src.text):
        # ruamel's pure-Python scanner is quadratic in flow nesting (10,000 `[` take
        # 20 s of CPU before the composer's RecursionError): refuse it from the text.
        return [], [src.issue(0, 0, _TOO_DEEP)]
    if src.text.count(",") + src.text.count("\n") > MAX_DOCUMENT_VALUES:
        # Each value needs a separator or a line; counted in C before the (slow) parse.
        return [], [src.issue(0, 0, _TOO_LARGE)]
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    try:
        raw = list(yaml.load_all(src.text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line, mark.column) if mark is not None else (0, 0)
        problem = exc.problem or exc.context or "invalid YAML"
        return [], [src.issue(line, col, f"invalid YAML/JSON: {problem}")]
    except RecursionError:
        return [], [src.issue(0, 0, _TOO_DEEP)]
    except Exception as exc:
        return [], [src.issue(0, 0, f"invalid YAML/JSON: {exc}")]
    problem = oversized(raw)
    if problem is not None:
        return [], [src.issue(0, 0, problem)]
    documents: list[Any] = []
    for doc in raw:
        if doc is None:
            continue
        if isinstance(doc, list):
            for index, item in enumerate(doc):
                documents.append(_Positioned(item, position(doc, "item", index)))
        else:
            documents.append(doc)
    return documents, []


_TOO_DEEP = f"document is nested too deeply (at most {MAX_DOCUMENT_DEPTH} levels)"
_TOO_LARGE = (
    f"document is too large: more than {MAX_DOCUMENT_VALUES} keys and values "
    "(each use of a YAML alias counts again)"
)
# More than MAX_DOCUMENT_DEPTH flow openers with no closer between them: that deep at
# least (brackets inside quoted strings can only make this refuse a weird document).
FLOW_TOO_DEEP = re.compile(r"(?:[\[{][^\]}\[{]*){" + str(MAX_DOCUMENT_DEPTH + 1) + "}")


def oversized(raw: list[Any]) -> str | None:
    """Why the parsed documents are too deep or too big, counting every use of an alias."""
    budget = MAX_DOCUMENT_VALUES
    stack: list[tuple[Any, int]] = [(doc, 1) for doc in raw]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = [*value.keys(), *value.values()]
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_DOCUMENT_DEPTH:
            return _TOO_DEEP
        budget -= len(children)
        if budget < 0:
            return _TOO_LARGE
        stack.extend((child, depth + 1) for child in children)
    return None


class _Positioned:
    """A document without positions of its own (a scalar in a top-level list) and where it is."""

    def __init__(self, value: Any, at: tuple[int, int]) -> None:
        self.value, self.at = value, at


def position(node: Any, kind: str, key: Any, default: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """0-based (line, column) of a mapping's `key` or its value (`kind` "key" or
    "value"), or of a sequence's item `key` ("item"), as ruamel recorded them;
    `default` when the node carries no positions (plain values, JSON arrays' scalars)."""
    lc = getattr(node, "lc", None)
    if lc is None:  # a plain value (the loader's fast path builds only those)
        return default
    try:
        line, col = getattr(lc, kind)(key)
        return int(line), int(col)
    except (AttributeError, KeyError, TypeError, IndexError):
        return default


def unwrap(doc: Any) -> tuple[Any, tuple[int, int] | None]:
    """The document and, for an element of a top-level list, its position."""
    if isinstance(doc, _Positioned):
        return doc.value, doc.at
    return doc, None


def to_plain(value: Any) -> Any:
    """ruamel's round-trip types -> plain JSON values (dates become ISO strings)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or kind is float or value is None:
        return value  # already plain (every scalar of the fast path's documents)
    if isinstance(value, dict):
        return {k if type(k) is str else str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    return str(value)


def policy_id_position(doc: Any) -> tuple[int, int]:
    """0-based position of a policy document's `metadata.id` value."""
    metadata = doc.get("metadata") if isinstance(doc, dict) else None
    return position(metadata, "value", "id")


def rule_id_position(doc: Any, rule_id: str) -> tuple[int, int]:
    """0-based position of the `id` value of the rule `rule_id` in a policy document."""
    rules = doc.get("rules") if isinstance(doc, dict) else None
    for item in rules if isinstance(rules, list) else ():
        if isinstance(item, dict) and item.get("id") == rule_id:
            return position(item, "value", "id")
    return 0, 0
