"""Hand-written protobuf codec for the evaluation messages (the hot path).

betterproto2 is pure Python and generic: parsing one EvaluatePolicyRequest
costs ~27 µs and building plus serialising one Decision ~110 µs, more than
the whole budget of a decision at 10,000/s. The evaluation messages are
fixed by the contract (field numbers included), so this module reads
EvaluatePolicyRequest (and its stream wrapper) and writes Decision (and its
response wrappers) directly on bytes, with the Struct codec of `_protobuf`.

FAST COPY of the betterproto2 classes generated from proto/ (_generated/,
which still serve every other message). Parity tests, in
packages/api-grpc/tests/test_grpc_wire.py: ::test_request_decoding_matches_betterproto2,
::test_decision_encoding_matches_betterproto2,
::test_decision_encoding_is_byte_identical_for_plain_decisions and
::test_unknown_fields_are_skipped. A change to these messages in
policy.proto goes into this module too.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from policy_grpc._protobuf import (
    DOUBLE,
    MAX_DEPTH,
    SHORT,
    WireError,
    decode_struct,
    encode_list,
    encode_struct,
    encode_value,
    encode_varint,
    len_end,
    len_field,
    skip,
    struct_at,
    text,
    varint,
)

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


def _decode_request_fields(buf: bytes, pos: int, end: int, out: WireRequest) -> None:
    while pos < end:
        key = buf[pos]
        if key < 0x80:  # every known field has a one-byte key
            pos += 1
        else:
            key, pos = varint(buf, pos)
        if key == 0x0A:  # 1: request_id
            start, pos = len_end(buf, pos, end)
            out.request_id = text(buf, start, pos)
        elif key == 0x3A:  # 7: context_json
            start, pos = len_end(buf, pos, end)
            out.context_json = buf[start:pos]
        elif key == 0x12:  # 2: context
            start, pos = len_end(buf, pos, end)
            out.context = struct_at(buf, start, pos)
            out.has_context = True
        elif key == 0x1A:  # 3: policies
            start, pos = len_end(buf, pos, end)
            out.policies.append(text(buf, start, pos))
        elif key == 0x22:  # 4: namespace
            start, pos = len_end(buf, pos, end)
            out.namespace = text(buf, start, pos)
        elif key == 0x28:  # 5: dry_run
            flag, pos = varint(buf, pos)
            out.dry_run = bool(flag)
        elif key == 0x30:  # 6: trace
            flag, pos = varint(buf, pos)
            out.trace = bool(flag)
        else:
            pos = skip(buf, pos, key & 7)
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
    except UnicodeDecodeError:
        out.error = "a string field is not valid UTF-8"
    return out


def decode_stream_request(data: bytes) -> WireRequest:
    """Read an EvaluatePolicyStreamRequest (field 1 wraps an EvaluatePolicyRequest)."""
    out = WireRequest()
    try:
        pos, end, found = 0, len(data), False
        while pos < end:
            key, pos = varint(data, pos)
            if key == 0x0A:
                start, pos = len_end(data, pos, end)
                # A repeated embedded message merges, as protobuf parsers do.
                _decode_request_fields(data, start, pos, out)
                found = True
            else:
                pos = skip(data, pos, key & 7)
        if not found:
            out.error = "the stream message carries no `request`"
    except WireError as exc:
        out.error = str(exc)
    except (IndexError, struct.error):
        out.error = "the message is truncated"
    except UnicodeDecodeError:
        out.error = "a string field is not valid UTF-8"
    return out


# --- encoding --------------------------------------------------------------------


def _memo_struct(obj: Any) -> bytes:
    """A Struct of a msgspec object; compiled obligations repeat, so their bytes are kept."""
    hit = _MEMO.get(id(obj))
    if hit is not None and hit[0] is obj:
        memo: bytes = hit[1]
        return memo
    data = len_field(b"", encode_struct(msgspec.to_builtins(obj)))
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
        hit = tag + (SHORT[n] if n < 128 else encode_varint(n)) + data
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
    `shadow`, `trace` and `reservation` only when set, as the contract says.
    """
    rid = request_id.encode()
    n = len(rid)
    parts = [
        b"\x0a" + (SHORT[n] if n < 128 else encode_varint(n)) + rid,
        _cached_field(_KINDS, b"\x12", decision.decision),
    ]
    if decision.allowed:
        parts.append(b"\x18\x01")
    reason = decision.reason
    if reason is not None:
        parts.append(len_field(b"\x22", reason.encode()))
    if decision.matched_policies:
        parts.extend([_cached_field(_POLICIES, b"\x2a", v) for v in decision.matched_policies])
    if decision.matched_rules:
        parts.extend([_cached_field(_RULES, b"\x32", v) for v in decision.matched_rules])
    if decision.matched_exceptions:
        parts.extend([_cached_field(_EXCEPTIONS, b"\x3a", v) for v in decision.matched_exceptions])
    if decision.warnings:
        parts.extend([len_field(b"\x42", v.encode()) for v in decision.warnings])
    modifications = decision.modifications
    parts.append(
        len_field(b"\x4a", encode_struct(modifications)) if modifications else _EMPTY_MODIFICATIONS
    )
    if decision.obligations:
        parts.extend([b"\x52" + _memo_struct(o) for o in decision.obligations])
    metadata = decision.metadata
    parts.append(len_field(b"\x5a", encode_struct(metadata)) if metadata else _EMPTY_METADATA)
    if decision.errors:
        parts.extend(
            [len_field(b"\x62", encode_struct(msgspec.to_builtins(e))) for e in decision.errors]
        )
    if decision.shadow is not None:
        parts.append(len_field(b"\x6a", encode_struct(msgspec.to_builtins(decision.shadow))))
    if decision.policy_set:
        parts.append(_cached_field(_POLICY_SETS, b"\x72", decision.policy_set))
    if decision.evaluation_time_ms:
        parts.append(b"\x79" + DOUBLE.pack(decision.evaluation_time_ms))
    if decision.trace is not None:
        parts.append(len_field(b"\x82\x01", encode_list(msgspec.to_builtins(decision.trace))))
    if cached:
        parts.append(b"\x88\x01\x01")
    if decision.reservation is not None:
        parts.append(
            len_field(b"\x92\x01", encode_struct(msgspec.to_builtins(decision.reservation)))
        )
    return b"".join(parts)


def wrap_decision(decision_message: bytes) -> bytes:
    """EvaluatePolicyResponse / EvaluatePolicyStreamResponse: field 1 holds the Decision."""
    return len_field(b"\x0a", decision_message)
