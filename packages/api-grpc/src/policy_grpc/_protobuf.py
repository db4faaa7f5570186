"""Protobuf wire primitives and google.protobuf.Struct / Value / ListValue, by hand.

betterproto2 decodes the 1 KB reference context as a Struct in ~1.4 ms; this
module in a small fraction of that (and the `context_json` fast path skips
Structs altogether). Decoding follows the protobuf rules (unknown fields
skipped, the last value of a field wins); the usual layout (an entry's key
then its value, each once) takes a fast path. Struct numbers are doubles on
the wire: whole numbers within 2**53 come back as ints, as from a JSON parser.

FAST COPY of betterproto2's google.protobuf Struct codec. Parity tests, in
packages/api-grpc/tests/test_grpc_wire.py: ::test_struct_decoding_matches_betterproto2,
::test_struct_encoding_matches_betterproto2 (both property tests) and
::test_struct_entries_in_any_field_order_and_last_value_wins.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

__all__ = [
    "DOUBLE",
    "MAX_DEPTH",
    "SHORT",
    "WireError",
    "decode_struct",
    "encode_list",
    "encode_struct",
    "encode_value",
    "encode_varint",
    "len_end",
    "len_field",
    "skip",
    "struct_at",
    "text",
    "varint",
]

#: Nesting allowed in a Struct context (objects and lists), like the HTTP API's limit.
MAX_DEPTH = 32

DOUBLE = struct.Struct("<d")
_INT_LIMIT = 2**53


class WireError(ValueError):
    """The bytes are not a valid message of the expected type."""


_TOO_DEEP = f"the context is nested deeper than {MAX_DEPTH} levels"
_OVERRUN = "a length-delimited field runs past the end of its message"


# --- primitives -------------------------------------------------------------------


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the varint at `pos`."""
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


def skip(buf: bytes, pos: int, wire_type: int) -> int:
    """The position after a field of `wire_type` whose value starts at `pos`."""
    if wire_type == 0:
        return varint(buf, pos)[1]
    if wire_type == 1:
        return pos + 8
    if wire_type == 2:
        length, pos = varint(buf, pos)
        return pos + length
    if wire_type == 5:
        return pos + 4
    raise WireError(f"unsupported wire type {wire_type}")


def text(buf: bytes, start: int, end: int) -> str:
    try:
        return buf[start:end].decode()
    except UnicodeDecodeError as exc:
        raise WireError("a string field is not valid UTF-8") from exc


def len_end(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """(start, stop) of the length-delimited value whose length is at `pos`."""
    length = buf[pos]
    if length < 0x80:
        pos += 1
    else:
        length, pos = varint(buf, pos)
    stop = pos + length
    if stop > end:
        raise WireError(_OVERRUN)
    return pos, stop


def encode_varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


#: Length prefixes of small payloads, by far the most common ones.
SHORT = tuple(bytes((n,)) for n in range(128))


def len_field(tag: bytes, payload: bytes) -> bytes:
    n = len(payload)
    return tag + (SHORT[n] if n < 128 else encode_varint(n)) + payload


# --- Struct decoding ------------------------------------------------------------------


def _number(buf: bytes, pos: int) -> float | int:
    (number,) = DOUBLE.unpack_from(buf, pos)
    if number.is_integer() and -_INT_LIMIT <= number <= _INT_LIMIT:
        return int(number)
    return float(number)


def _value(buf: bytes, pos: int, end: int, depth: int) -> Any:
    """A Value occupying exactly buf[pos:end] (an empty Value is null)."""
    if pos == end:
        return None
    tag = buf[pos]
    if tag == 0x1A:  # string_value
        start, stop = len_end(buf, pos + 1, end)
        if stop == end:
            return buf[start:stop].decode()
    elif tag == 0x11 and pos + 9 == end:  # number_value
        return _number(buf, pos + 1)
    elif tag == 0x20 and pos + 2 == end:  # bool_value
        return buf[pos + 1] != 0
    elif tag == 0x08 and pos + 2 == end:  # null_value
        return None
    elif tag == 0x2A:  # struct_value
        start, stop = len_end(buf, pos + 1, end)
        if stop == end:
            return _struct(buf, start, stop, depth + 1)
    elif tag == 0x32:  # list_value
        start, stop = len_end(buf, pos + 1, end)
        if stop == end:
            return _list(buf, start, stop, depth + 1)
    return _value_fields(buf, pos, end, depth)


def _value_fields(buf: bytes, pos: int, end: int, depth: int) -> Any:
    # The general case: any field order, repeated or unknown fields (the last one wins).
    value: Any = None
    while pos < end:
        key, pos = varint(buf, pos)
        wire_type = key & 7
        if key == 0x11:
            value = _number(buf, pos)
            pos += 8
        elif key == 0x20 or key == 0x08:
            flag, pos = varint(buf, pos)
            value = bool(flag) if key == 0x20 else None
        elif key == 0x1A:
            start, pos = len_end(buf, pos, end)
            value = buf[start:pos].decode()
        elif key == 0x2A:
            start, pos = len_end(buf, pos, end)
            value = _struct(buf, start, pos, depth + 1)
        elif key == 0x32:
            start, pos = len_end(buf, pos, end)
            value = _list(buf, start, pos, depth + 1)
        else:
            pos = skip(buf, pos, wire_type)
    if pos != end:
        raise WireError(_OVERRUN)
    return value


def _list(buf: bytes, pos: int, end: int, depth: int) -> list[Any]:
    if depth > MAX_DEPTH:
        raise WireError(_TOO_DEEP)
    items: list[Any] = []
    while pos < end:
        if buf[pos] == 0x0A:
            start, pos = len_end(buf, pos + 1, end)
            items.append(_value(buf, start, pos, depth))
        else:
            key, pos = varint(buf, pos)
            pos = skip(buf, pos, key & 7)
    if pos != end:
        raise WireError(_OVERRUN)
    return items


def _struct(buf: bytes, pos: int, end: int, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise WireError(_TOO_DEEP)
    fields: dict[str, Any] = {}
    while pos < end:
        if buf[pos] != 0x0A:  # not a map entry: skip it
            key, pos = varint(buf, pos)
            pos = skip(buf, pos, key & 7)
            continue
        start, stop = len_end(buf, pos + 1, end)
        name, value = _entry(buf, start, stop, depth)
        fields[name] = value
        pos = stop
    if pos != end:
        raise WireError(_OVERRUN)
    return fields


def _entry(buf: bytes, pos: int, end: int, depth: int) -> tuple[str, Any]:
    if pos < end and buf[pos] == 0x0A:  # the usual layout: key, then value
        key_start, key_stop = len_end(buf, pos + 1, end)
        if key_stop < end and buf[key_stop] == 0x12:
            value_start, value_stop = len_end(buf, key_stop + 1, end)
            if value_stop == end:
                return buf[key_start:key_stop].decode(), _value(buf, value_start, end, depth)
    name, value = "", None
    while pos < end:
        key, pos = varint(buf, pos)
        if key == 0x0A:
            start, pos = len_end(buf, pos, end)
            name = buf[start:pos].decode()
        elif key == 0x12:
            start, pos = len_end(buf, pos, end)
            value = _value(buf, start, pos, depth)
        else:
            pos = skip(buf, pos, key & 7)
    return name, value


def struct_at(buf: bytes, pos: int, end: int) -> dict[str, Any]:
    """The Struct occupying buf[pos:end] (raises WireError, IndexError or UnicodeError)."""
    return _struct(buf, pos, end, 1)


def decode_struct(data: bytes) -> dict[str, Any]:
    """A serialised google.protobuf.Struct as a dict (raises WireError)."""
    try:
        return _struct(data, 0, len(data), 1)
    except (IndexError, struct.error) as exc:
        raise WireError("the message is truncated") from exc
    except UnicodeDecodeError as exc:
        raise WireError("a string field is not valid UTF-8") from exc


# --- Struct encoding ---------------------------------------------------------------------

# Context and decision keys repeat endlessly ("decision", "severity"...): keep their bytes.
_KEYS: dict[str, bytes] = {}
_KEYS_MAX = 4096


def _key_entry(name: str) -> bytes:
    """The `key` field of a Struct map entry, cached per name."""
    cached = _KEYS.get(name)
    if cached is None:
        cached = len_field(b"\x0a", name.encode())
        if len(_KEYS) < _KEYS_MAX:
            _KEYS[name] = cached
    return cached


def encode_value(value: Any) -> bytes:
    """A google.protobuf.Value holding `value` (JSON-compatible; tuples are lists)."""
    kind = type(value)
    if kind is str:
        data: bytes = value.encode()
        n = len(data)
        return b"\x1a" + (SHORT[n] if n < 128 else encode_varint(n)) + data
    if kind is bool:
        return b"\x20\x01" if value else b"\x20\x00"
    if kind is int or kind is float:
        return b"\x11" + DOUBLE.pack(value)
    if value is None:
        return b"\x08\x00"
    if kind is dict:
        return len_field(b"\x2a", encode_struct(value))
    if kind is list or kind is tuple:
        return len_field(b"\x32", encode_list(value))
    return _encode_other(value)


def _encode_other(value: Any) -> bytes:
    # Subclasses (str enums, OrderedDict...), then anything msgspec can turn into JSON data.
    if isinstance(value, str):
        return encode_value(str(value))
    if isinstance(value, int | float):
        return encode_value(float(value))
    if isinstance(value, Mapping):
        return len_field(b"\x2a", encode_struct(value))
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return len_field(b"\x32", encode_list(value))
    return encode_value(msgspec.to_builtins(value))


def encode_list(items: Sequence[Any]) -> bytes:
    """A google.protobuf.ListValue."""
    parts = []
    for item in items:
        data = encode_value(item)
        n = len(data)
        parts.append(b"\x0a" + (SHORT[n] if n < 128 else encode_varint(n)) + data)
    return b"".join(parts)


def encode_struct(fields: Mapping[str, Any]) -> bytes:
    """A google.protobuf.Struct (map entries in the mapping's order)."""
    parts = []
    for name, value in fields.items():
        data = encode_value(value)
        n = len(data)
        entry = _key_entry(name if type(name) is str else str(name))
        entry += b"\x12" + (SHORT[n] if n < 128 else encode_varint(n)) + data
        n = len(entry)
        parts.append(b"\x0a" + (SHORT[n] if n < 128 else encode_varint(n)) + entry)
    return b"".join(parts)
