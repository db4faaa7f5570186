"""Hand-written protobuf codec for the evaluation messages (the hot path).

betterproto2 is pure Python and generic: parsing one EvaluatePolicyRequest
costs ~27 µs and building plus serialising one Decision ~110 µs, more than
the whole budget of a decision at 10,000/s. The evaluation messages are
fixed by the contract (field numbers included), so this module reads and
writes exactly those, plus google.protobuf.Struct/Value/ListValue, directly
on bytes. The tests check it against the betterproto2 classes generated from
the same proto, byte for byte in both directions.

Struct numbers are doubles on the wire; whole numbers within 2**53 are
given to the engine as ints, as a JSON parser would.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

__all__ = [
    "MAX_DEPTH",
    "WireError",
    "WireRequest",
    "decode_request",
    "decode_stream_request",
    "decode_struct",
    "encode_decision",
    "encode_struct",
    "encode_value",
]

#: Nesting allowed in a Struct context (objects and lists), like the HTTP API's limit.
MAX_DEPTH = 32

_DOUBLE = struct.Struct("<d")
_INT_LIMIT = 2**53


class WireError(ValueError):
    """The bytes are not a valid message of the expected type."""


class WireRequest(msgspec.Struct, kw_only=True):
    """An EvaluatePolicyRequest as read from the wire, before validation."""

    request_id: str = ""
    context: dict[str, Any] | None = None
    context_json: bytes = b""
    has_context: bool = False
    policies: list[str] = msgspec.field(default_factory=list)
    namespace: str = ""
    dry_run: bool = False
    trace: bool = False
    # Set instead of raising, so that one bad message in a stream gets its own answer.
    error: str | None = None


# --- decoding ------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise WireError("a varint is longer than 10 bytes")


def _skip(buf: bytes, pos: int, wire_type: int) -> int:
    if wire_type == 0:
        return _varint(buf, pos)[1]
    if wire_type == 1:
        return pos + 8
    if wire_type == 2:
        length, pos = _varint(buf, pos)
        return pos + length
    if wire_type == 5:
        return pos + 4
    raise WireError(f"unsupported wire type {wire_type}")


def _text(buf: bytes, start: int, end: int) -> str:
    try:
        return buf[start:end].decode()
    except UnicodeDecodeError as exc:
        raise WireError("a string field is not valid UTF-8") from exc


def _len_end(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    length = buf[pos]
    if length < 0x80:
        pos += 1
    else:
        length, pos = _varint(buf, pos)
    stop = pos + length
    if stop > end:
        raise WireError("a length-delimited field runs past the end of its message")
    return pos, stop


def _decode_value(buf: bytes, pos: int, end: int, depth: int) -> Any:
    value: Any = None
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire_type = key >> 3, key & 7
        if field == 2 and wire_type == 1:
            (number,) = _DOUBLE.unpack_from(buf, pos)
            pos += 8
            if number.is_integer() and -_INT_LIMIT <= number <= _INT_LIMIT:
                number = int(number)
            value = number
        elif field == 3 and wire_type == 2:
            start, pos = _len_end(buf, pos, end)
            value = _text(buf, start, pos)
        elif field == 4 and wire_type == 0:
            flag, pos = _varint(buf, pos)
            value = bool(flag)
        elif field == 1 and wire_type == 0:
            pos = _varint(buf, pos)[1]
            value = None
        elif field == 5 and wire_type == 2:
            start, pos = _len_end(buf, pos, end)
            value = _decode_struct(buf, start, pos, depth + 1)
        elif field == 6 and wire_type == 2:
            start, pos = _len_end(buf, pos, end)
            value = _decode_list(buf, start, pos, depth + 1)
        else:
            pos = _skip(buf, pos, wire_type)
    return value


def _decode_list(buf: bytes, pos: int, end: int, depth: int) -> list[Any]:
    if depth > MAX_DEPTH:
        raise WireError(f"the context is nested deeper than {MAX_DEPTH} levels")
    items: list[Any] = []
    while pos < end:
        key, pos = _varint(buf, pos)
        if key == 0x0A:
            start, pos = _len_end(buf, pos, end)
            items.append(_decode_value(buf, start, pos, depth))
        else:
            pos = _skip(buf, pos, key & 7)
    return items


def _decode_struct(buf: bytes, pos: int, end: int, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise WireError(f"the context is nested deeper than {MAX_DEPTH} levels")
    fields: dict[str, Any] = {}
    while pos < end:
        key, pos = _varint(buf, pos)
        if key != 0x0A:
            pos = _skip(buf, pos, key & 7)
            continue
        entry, pos = _len_end(buf, pos, end)
        name = ""
        value: Any = None
        while entry < pos:
            ekey, entry = _varint(buf, entry)
            if ekey == 0x0A:
                start, entry = _len_end(buf, entry, pos)
                name = _text(buf, start, entry)
            elif ekey == 0x12:
                start, entry = _len_end(buf, entry, pos)
                value = _decode_value(buf, start, entry, depth)
            else:
                entry = _skip(buf, entry, ekey & 7)
        fields[name] = value
    return fields


def decode_struct(data: bytes) -> dict[str, Any]:
    """A serialised google.protobuf.Struct as a dict (raises WireError)."""
    try:
        return _decode_struct(data, 0, len(data), 1)
    except (IndexError, struct.error) as exc:
        raise WireError("the message is truncated") from exc


def _decode_request_fields(buf: bytes, pos: int, end: int, out: WireRequest) -> None:
    while pos < end:
        key = buf[pos]
        if key < 0x80:  # every known field has a one-byte key
            pos += 1
        else:
            key, pos = _varint(buf, pos)
        if key == 0x0A:  # 1: request_id
            start, pos = _len_end(buf, pos, end)
            out.request_id = _text(buf, start, pos)
        elif key == 0x3A:  # 7: context_json
            start, pos = _len_end(buf, pos, end)
            out.context_json = buf[start:pos]
        elif key == 0x12:  # 2: context
            start, pos = _len_end(buf, pos, end)
            out.context = _decode_struct(buf, start, pos, 1)
            out.has_context = True
        elif key == 0x1A:  # 3: policies
            start, pos = _len_end(buf, pos, end)
            out.policies.append(_text(buf, start, pos))
        elif key == 0x22:  # 4: namespace
            start, pos = _len_end(buf, pos, end)
            out.namespace = _text(buf, start, pos)
        elif key == 0x28:  # 5: dry_run
            flag, pos = _varint(buf, pos)
            out.dry_run = bool(flag)
        elif key == 0x30:  # 6: trace
            flag, pos = _varint(buf, pos)
            out.trace = bool(flag)
        else:
            pos = _skip(buf, pos, key & 7)
    if pos != end:
        raise WireError("the message is truncated")


def decode_request(data: bytes) -> WireRequest:
    """Read an EvaluatePolicyRequest; problems are reported in `.error`, never raised."""
    out = WireRequest()
    try:
        _decode_request_fields(data, 0, len(data), out)
    except WireError as exc:
        out.error = str(exc)
    except (IndexError, struct.error):
        out.error = "the message is truncated"
    return out


def decode_stream_request(data: bytes) -> WireRequest:
    """Read an EvaluatePolicyStreamRequest (field 1 wraps an EvaluatePolicyRequest)."""
    out = WireRequest()
    try:
        pos, end, found = 0, len(data), False
        while pos < end:
            key, pos = _varint(data, pos)
            if key == 0x0A:
                start, pos = _len_end(data, pos, end)
                # A repeated embedded message merges, as protobuf parsers do.
                _decode_request_fields(data, start, pos, out)
                found = True
            else:
                pos = _skip(data, pos, key & 7)
        if not found:
            out.error = "the stream message carries no `request`"
    except WireError as exc:
        out.error = str(exc)
    except (IndexError, struct.error):
        out.error = "the message is truncated"
    return out


# --- encoding --------------------------------------------------------------------


def _encode_varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Small lengths are by far the most common: keep their prefixes ready.
_SHORT = tuple(bytes((n,)) for n in range(128))


def _len_prefix(length: int) -> bytes:
    return _SHORT[length] if length < 128 else _encode_varint(length)


def _len_field(tag: bytes, payload: bytes) -> bytes:
    n = len(payload)
    return tag + (_SHORT[n] if n < 128 else _encode_varint(n)) + payload


def _key_entry(name: str) -> bytes:
    """The `key` part of a Struct map entry (field 1 of the entry), cached per name."""
    cached = _KEYS.get(name)
    if cached is None:
        data = name.encode()
        cached = b"\x0a" + _len_prefix(len(data)) + data
        if len(_KEYS) < _KEYS_MAX:
            _KEYS[name] = cached
    return cached


# Context and decision keys repeat endlessly ("decision", "severity"...): keep their bytes.
_KEYS: dict[str, bytes] = {}
_KEYS_MAX = 4096


def encode_value(value: Any) -> bytes:
    """A google.protobuf.Value holding `value` (JSON-compatible; tuples are lists)."""
    kind = type(value)
    if kind is str:
        data: bytes = value.encode()
        n = len(data)
        return b"\x1a" + (_SHORT[n] if n < 128 else _encode_varint(n)) + data
    if kind is bool:
        return b"\x20\x01" if value else b"\x20\x00"
    if kind is int or kind is float:
        return b"\x11" + _DOUBLE.pack(value)
    if value is None:
        return b"\x08\x00"
    if kind is dict:
        return _len_field(b"\x2a", encode_struct(value))
    if kind is list or kind is tuple:
        return _len_field(b"\x32", encode_list(value))
    return _encode_other(value)


def _encode_other(value: Any) -> bytes:
    # Subclasses (str enums, OrderedDict...), then anything msgspec can turn into JSON data.
    if isinstance(value, str):
        return encode_value(str(value))
    if isinstance(value, int | float):
        return encode_value(float(value))
    if isinstance(value, Mapping):
        return _len_field(b"\x2a", encode_struct(value))
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return _len_field(b"\x32", encode_list(value))
    return encode_value(msgspec.to_builtins(value))


def encode_list(items: Sequence[Any]) -> bytes:
    """A google.protobuf.ListValue."""
    parts = []
    for item in items:
        data = encode_value(item)
        n = len(data)
        parts.append(b"\x0a" + (_SHORT[n] if n < 128 else _encode_varint(n)) + data)
    return b"".join(parts)


def encode_struct(fields: Mapping[str, Any]) -> bytes:
    """A google.protobuf.Struct (map entries in the mapping's order)."""
    parts = []
    for name, value in fields.items():
        data = encode_value(value)
        n = len(data)
        entry = _key_entry(name if type(name) is str else str(name))
        entry += b"\x12" + (_SHORT[n] if n < 128 else _encode_varint(n)) + data
        n = len(entry)
        parts.append(b"\x0a" + (_SHORT[n] if n < 128 else _encode_varint(n)) + entry)
    return b"".join(parts)


def _memo_struct(obj: Any) -> bytes:
    """A Struct of a msgspec object; compiled obligations repeat, so their bytes are kept."""
    hit = _MEMO.get(id(obj))
    if hit is not None and hit[0] is obj:
        memo: bytes = hit[1]
        return memo
    data = _len_field(b"", encode_struct(msgspec.to_builtins(obj)))
    if len(_MEMO) >= _MEMO_MAX:
        _MEMO.clear()
    # The object is kept alive with its bytes, so its id cannot be reused meanwhile.
    _MEMO[id(obj)] = (obj, data)
    return data


_MEMO: dict[int, tuple[Any, bytes]] = {}
_MEMO_MAX = 1024


def _cached_field(cache: dict[str, bytes], tag: bytes, value: str) -> bytes:
    """A string field whose values repeat (ids, policy set): its bytes are kept."""
    hit = cache.get(value)
    if hit is None:
        data = value.encode()
        n = len(data)
        hit = tag + (_SHORT[n] if n < 128 else _encode_varint(n)) + data
        if len(cache) < _FIELDS_MAX:
            cache[value] = hit
    return hit


_FIELDS_MAX = 4096
_KINDS: dict[str, bytes] = {}
_POLICIES: dict[str, bytes] = {}
_RULES: dict[str, bytes] = {}
_EXCEPTIONS: dict[str, bytes] = {}
_POLICY_SETS: dict[str, bytes] = {}
_EMPTY_MODIFICATIONS = b"\x4a\x00"
_EMPTY_METADATA = b"\x5a\x00"


def encode_decision(decision: Any, request_id: str, *, cached: bool = False) -> bytes:
    """Serialise a policy_core Decision as the contract's `Decision` message.

    `modifications` and `metadata` are always present (possibly empty);
    `shadow` and `trace` only when set, as the contract says.
    """
    rid = request_id.encode()
    n = len(rid)
    parts = [
        b"\x0a" + (_SHORT[n] if n < 128 else _encode_varint(n)) + rid,
        _cached_field(_KINDS, b"\x12", decision.decision),
    ]
    if decision.allowed:
        parts.append(b"\x18\x01")
    reason = decision.reason
    if reason is not None:
        parts.append(_len_field(b"\x22", reason.encode()))
    if decision.matched_policies:
        parts.extend([_cached_field(_POLICIES, b"\x2a", v) for v in decision.matched_policies])
    if decision.matched_rules:
        parts.extend([_cached_field(_RULES, b"\x32", v) for v in decision.matched_rules])
    if decision.matched_exceptions:
        parts.extend([_cached_field(_EXCEPTIONS, b"\x3a", v) for v in decision.matched_exceptions])
    if decision.warnings:
        parts.extend([_len_field(b"\x42", v.encode()) for v in decision.warnings])
    modifications = decision.modifications
    parts.append(
        _len_field(b"\x4a", encode_struct(modifications)) if modifications else _EMPTY_MODIFICATIONS
    )
    if decision.obligations:
        parts.extend([b"\x52" + _memo_struct(o) for o in decision.obligations])
    metadata = decision.metadata
    parts.append(_len_field(b"\x5a", encode_struct(metadata)) if metadata else _EMPTY_METADATA)
    if decision.errors:
        parts.extend(
            [_len_field(b"\x62", encode_struct(msgspec.to_builtins(e))) for e in decision.errors]
        )
    if decision.shadow is not None:
        parts.append(_len_field(b"\x6a", encode_struct(msgspec.to_builtins(decision.shadow))))
    if decision.policy_set:
        parts.append(_cached_field(_POLICY_SETS, b"\x72", decision.policy_set))
    if decision.evaluation_time_ms:
        parts.append(b"\x79" + _DOUBLE.pack(decision.evaluation_time_ms))
    if decision.trace is not None:
        parts.append(_len_field(b"\x82\x01", encode_list(msgspec.to_builtins(decision.trace))))
    if cached:
        parts.append(b"\x88\x01\x01")
    return b"".join(parts)


def wrap_decision(decision_message: bytes) -> bytes:
    """EvaluatePolicyResponse / EvaluatePolicyStreamResponse: field 1 holds the Decision."""
    return b"\x0a" + _len_prefix(len(decision_message)) + decision_message
