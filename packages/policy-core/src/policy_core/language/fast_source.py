"""The fast first parse of a policy text: plain values, no positions (issue 16).

`plain_documents` is the fast copy of `source.parse_documents` followed by
`source.to_plain` on each value, for the documents that need nothing
unusual. It reads the text with libyaml's C event parser (PyYAML's
`yaml._yaml.CParser`, the same C parser ruamel.yaml's own C loader wraps),
resolves plain scalars with ruamel.yaml's YAML 1.2 implicit-resolver table (the
one the round-trip loader uses), and builds plain dicts and lists. It keeps no
line or column: the loader builds the Policy from these documents, and only
when that reports a problem (or a warning) does it parse again with the
position-keeping round-trip loader, which then writes every message. So
messages and positions are the slow path's by construction; what the fast
path must get right is the values of documents it accepts.

It declines (returns None) rather than guess on anything outside the subset:
anchors, aliases, tags, `%` directives, merge keys, non-string mapping keys,
duplicate keys, timestamps, ints and floats other than plain decimal ones,
tabs anywhere, any libyaml error, a libyaml build without its C extension. The texts the
slow path refuses before parsing (too deep, too large) are declined the same
way.

Parity tests, on every policy text of the repository, the language cases
(bad documents included), the loader fuzz corpus, YAML corner cases and seeded
mutations of all of them: the fast parse declines or yields exactly the slow
parse's documents (packages/policy-core/tests/test_loader_fast_path.py
::test_fast_parse_declines_or_equals_the_round_trip_parse), and the loader gives
the same policies or PolicyLoadError issues
(::test_loader_gives_the_same_result_with_and_without_the_fast_path) and the
same warnings (::test_validation_gives_the_same_warnings_with_and_without_the_fast_path)
with and without it.
"""

from __future__ import annotations

import re
from typing import Any

from policy_core.language import source

__all__ = ["plain_documents"]


class _Decline(Exception):
    """The document needs the round-trip loader."""


_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\.[0-9]+\Z")
_STR, _NULL, _BOOL = "tag:yaml.org,2002:str", "tag:yaml.org,2002:null", "tag:yaml.org,2002:bool"
_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"

# first character -> [(tag, regex)] of ruamel's YAML 1.2 table, in its order
_resolvers: dict[str, list[tuple[str, Any]]] | None = None
_plain_cache: dict[str, Any] = {}
_DECLINE = object()
_MISS = object()


def _table() -> dict[str, list[tuple[str, Any]]]:
    global _resolvers
    if _resolvers is None:
        # deferred: the loader's slow path imports ruamel.yaml anyway
        from ruamel.yaml.resolver import implicit_resolvers

        table: dict[str, list[tuple[str, Any]]] = {}
        for versions, tag, regexp, first in implicit_resolvers:
            if (1, 2) in versions:
                for ch in first:
                    table.setdefault(ch, []).append((tag, regexp))
        _resolvers = table
    return _resolvers


def _resolve(value: str) -> Any:
    """A plain scalar's value as the round-trip loader constructs it, or _DECLINE."""
    tag = _STR
    for candidate, regexp in _table().get(value[:1], ()):
        if regexp.match(value):
            tag = candidate
            break
    if tag == _STR:
        return value
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return value in ("true", "True", "TRUE")
    if tag == _INT_TAG and _INT.match(value):
        return int(value)
    if tag == _FLOAT_TAG and _FLOAT.match(value):
        return float(value)
    return _DECLINE  # octal, hex, underscores, exponents, inf/nan, timestamps, merge, value


def _plain(value: str) -> Any:
    try:
        return _plain_cache[value]
    except KeyError:
        pass
    result = _resolve(value)
    if len(_plain_cache) > 4096:
        _plain_cache.clear()
    _plain_cache[value] = result
    return result


def plain_documents(text: str) -> list[Any] | None:
    """The documents of `text` as plain values (a top-level list counts as several,
    empty documents are skipped), or None when the slow path must read it."""
    if "\t" in text:
        return None  # libyaml takes a tab as a separator where ruamel refuses it (`a:\tb`)
    try:
        # deferred, and optional: without libyaml's C extension every text takes the slow path
        from yaml._yaml import CParser
    except ImportError:
        return None
    try:
        raw = _Builder(CParser(text)).documents()
    except _Decline:
        return None
    except Exception:  # any libyaml error (or a nesting too deep): the round-trip loader reports it
        return None
    documents: list[Any] = []
    for doc in raw:
        if doc is None:
            continue
        if isinstance(doc, list):
            documents.extend(doc)
        else:
            documents.append(doc)
    return documents


class _Builder:
    """Plain values from libyaml's events; _Decline on anything outside the subset."""

    def __init__(self, parser: Any) -> None:
        # deferred with the parser itself (see plain_documents)
        from yaml import events

        self.get = parser.get_event
        self.parser = parser
        self.scalar = events.ScalarEvent
        self.map_start, self.map_end = events.MappingStartEvent, events.MappingEndEvent
        self.seq_start, self.seq_end = events.SequenceStartEvent, events.SequenceEndEvent
        self.doc_start, self.stream_end = events.DocumentStartEvent, events.StreamEndEvent
        # what source.oversized allows: keys and values below the roots, and depth
        # (read at each parse, as parse_documents does: a caller may change the limit)
        self.budget = source.MAX_DOCUMENT_VALUES

    def documents(self) -> list[Any]:
        get = self.get
        get()  # StreamStartEvent
        out: list[Any] = []
        while True:
            event = get()
            if type(event) is self.stream_end:
                break
            if type(event) is not self.doc_start or event.version is not None or event.tags:
                raise _Decline  # a %YAML or %TAG directive
            out.append(self.node(get(), 1))
            get()  # DocumentEndEvent
        self.parser.dispose()
        return out

    def node(self, event: Any, depth: int) -> Any:
        """The value that starts with `event`; a collection at `depth` (the root's is 1)."""
        kind = type(event)
        if kind is self.scalar:
            if event.anchor is not None or event.tag is not None:
                raise _Decline
            if event.style != "":
                return event.value
            value = _plain_cache.get(event.value, _MISS)
            if value is _MISS:
                value = _plain(event.value)
            if value is _DECLINE:
                raise _Decline
            return value
        if event.anchor is not None or event.tag is not None:
            raise _Decline  # an anchored or tagged collection, or an alias
        if depth > source.MAX_DOCUMENT_DEPTH:
            raise _Decline  # source.oversized refuses it
        get, node, inner = self.get, self.node, depth + 1
        if kind is self.map_start:
            mapping: dict[str, Any] = {}
            scalar, end = self.scalar, self.map_end
            while True:
                event = get()
                if type(event) is not scalar:
                    if type(event) is end:
                        self._spend(2 * len(mapping))
                        return mapping
                    raise _Decline  # a complex key
                key = node(event, inner)
                if type(key) is not str or key in mapping:
                    raise _Decline  # a non-string or duplicate key
                mapping[key] = node(get(), inner)
        if kind is self.seq_start:
            items: list[Any] = []
            end = self.seq_end
            while True:
                event = get()
                if type(event) is end:
                    self._spend(len(items))
                    return items
                items.append(node(event, inner))
        raise _Decline  # an alias

    def _spend(self, values: int) -> None:
        self.budget -= values
        if self.budget < 0:
            raise _Decline  # source.oversized refuses it
