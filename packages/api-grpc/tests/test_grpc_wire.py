"""The hand-written codec of the evaluation messages agrees with betterproto2's."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings, strategies as st
from policy_core.model import (
    AuditObligation,
    Decision,
    EvaluationError,
    RedactObligation,
    Reservation,
    RuleTrace,
)
from policy_core.ports import PolicyRecord, PolicyResource
from policy_grpc import _wire
from policy_grpc._convert import policy_message
from policy_grpc._generated.google.protobuf import Struct
from policy_grpc._generated.llm_policy.v1 import (
    Decision as PbDecision,
    EvaluatePolicyRequest,
    EvaluatePolicyResponse,
    EvaluatePolicyStreamRequest,
    EvaluatePolicyStreamResponse,
)

_numbers = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
)
_scalars = st.one_of(st.none(), st.booleans(), _numbers, st.text(max_size=20))
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_objects = st.dictionaries(st.text(max_size=8), _json, max_size=5)


def _normal(value: Any) -> Any:
    """JSON numbers are one type: compare 2 and 2.0 alike (Struct carries doubles)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return [_normal(v) for v in value]


@settings(max_examples=200, deadline=None)
@given(_objects)
def test_struct_decoding_matches_betterproto2(context: dict[str, Any]) -> None:
    data = bytes(Struct.from_dict(context))
    assert _normal(_wire.decode_struct(data)) == _normal(context)


@settings(max_examples=200, deadline=None)
@given(_objects)
def test_struct_encoding_matches_betterproto2(context: dict[str, Any]) -> None:
    assert _normal(Struct.FromString(_wire.encode_struct(context)).to_dict()) == _normal(context)


def test_whole_numbers_reach_the_engine_as_ints() -> None:
    decoded = _wire.decode_struct(bytes(Struct.from_dict({"n": 512, "f": 0.5, "big": 2.0**60})))
    assert decoded == {"n": 512, "f": 0.5, "big": 2.0**60}
    assert isinstance(decoded["n"], int)
    assert isinstance(decoded["big"], float)


@settings(max_examples=100, deadline=None)
@given(
    request_id=st.text(max_size=10),
    context=_objects,
    policies=st.lists(st.text(max_size=6), max_size=3),
    namespace=st.text(max_size=6),
    dry_run=st.booleans(),
    trace=st.booleans(),
    as_json=st.booleans(),
)
def test_request_decoding_matches_betterproto2(
    request_id: str,
    context: dict[str, Any],
    policies: list[str],
    namespace: str,
    dry_run: bool,
    trace: bool,
    as_json: bool,
) -> None:
    message = EvaluatePolicyRequest(
        request_id=request_id,
        policies=policies,
        namespace=namespace,
        dry_run=dry_run,
        trace=trace,
    )
    if as_json:
        message.context_json = json.dumps(context).encode()
    else:
        message.context = Struct.from_dict(context)
    for wire in (
        _wire.decode_request(bytes(message)),
        _wire.decode_stream_request(bytes(EvaluatePolicyStreamRequest(request=message))),
    ):
        assert wire.error is None
        assert (wire.request_id, wire.policies, wire.namespace) == (request_id, policies, namespace)
        assert (wire.dry_run, wire.trace) == (dry_run, trace)
        if as_json:
            assert json.loads(wire.context_json) == context
            assert not wire.has_context
        else:
            assert wire.has_context
            assert _normal(wire.context) == _normal(context)


def test_malformed_requests_are_reported_not_raised() -> None:
    good = bytes(EvaluatePolicyStreamRequest(request=EvaluatePolicyRequest(request_id="abc")))
    assert _wire.decode_stream_request(good[:-1]).error is not None
    assert _wire.decode_stream_request(b"").error == "the stream message carries no `request`"
    assert _wire.decode_request(b"\x0a\x02\xff\xfe").error == "a string field is not valid UTF-8"
    assert _wire.decode_request(b"\x0b").error is not None  # wire type 3: groups
    deep: dict[str, Any] = {}
    for _ in range(_wire.MAX_DEPTH + 2):
        deep = {"a": deep}
    nested = bytes(EvaluatePolicyRequest(context=Struct.from_dict(deep)))
    assert "nested deeper" in (_wire.decode_request(nested).error or "")


def test_unknown_fields_are_skipped() -> None:
    known = bytes(EvaluatePolicyRequest(request_id="x", namespace="ns"))
    extra = b"\x98\x06\x07" + b"\xa1\x06" + b"\x00" * 8 + b"\xaa\x06\x01z" + b"\xad\x06" + b"\0" * 4
    wire = _wire.decode_request(extra + known)
    assert (wire.error, wire.request_id, wire.namespace) == (None, "x", "ns")


_decisions = st.builds(
    Decision,
    decision=st.sampled_from(["allow", "deny", "warn", "modify"]),
    allowed=st.booleans(),
    reason=st.one_of(st.none(), st.text(max_size=10)),
    matched_policies=st.lists(st.text(max_size=5), max_size=3).map(tuple),
    matched_rules=st.lists(st.text(max_size=5), max_size=3).map(tuple),
    matched_exceptions=st.lists(st.text(max_size=5), max_size=2).map(tuple),
    warnings=st.lists(st.text(max_size=5), max_size=2).map(tuple),
    modifications=_objects,
    obligations=st.lists(
        st.one_of(
            st.builds(AuditObligation, severity=st.just("high"), alert=st.booleans()),
            st.builds(RedactObligation, rule=st.text(max_size=4)),
        ),
        max_size=2,
    ).map(tuple),
    metadata=_objects,
    errors=st.lists(
        st.builds(EvaluationError, policy=st.text(max_size=3), rule=st.text(max_size=3)),
        max_size=2,
    ).map(tuple),
    shadow=st.one_of(
        st.none(), st.builds(Decision, decision=st.just("deny"), allowed=st.just(False))
    ),
    policy_set=st.text(max_size=12),
    evaluation_time_ms=st.floats(min_value=0, max_value=1e6),
    trace=st.one_of(
        st.none(),
        st.lists(
            st.builds(RuleTrace, policy=st.just("p"), rule=st.just("r"), result=st.just("matched")),
            max_size=2,
        ).map(tuple),
    ),
    reservation=st.one_of(
        st.none(),
        st.builds(
            Reservation,
            id=st.text(min_size=1, max_size=8),
            amount=st.floats(min_value=0, max_value=1e6),
            keys=st.lists(st.text(max_size=5), min_size=1, max_size=3).map(tuple),
            expires_at=st.datetimes(timezones=st.just(UTC)),
        ),
    ),
)


def _expected(decision: Decision, request_id: str, cached: bool) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(decision)
    out.update(request_id=request_id, cached=cached)
    return _normal_decision(out)


def _normal_decision(d: dict[str, Any]) -> dict[str, Any]:
    for key in (
        "modifications",
        "metadata",
        "shadow",
        "trace",
        "obligations",
        "errors",
        "reservation",
    ):
        d[key] = _normal(d[key])
    return d


def _actual(message: PbDecision) -> dict[str, Any]:
    return _normal_decision(
        {
            "request_id": message.request_id,
            "decision": message.decision,
            "allowed": message.allowed,
            "reason": message.reason,
            "matched_policies": tuple(message.matched_policies),
            "matched_rules": tuple(message.matched_rules),
            "matched_exceptions": tuple(message.matched_exceptions),
            "warnings": tuple(message.warnings),
            "modifications": message.modifications.to_dict() if message.modifications else {},
            "obligations": [o.to_dict() for o in message.obligations],
            "metadata": message.metadata.to_dict() if message.metadata else {},
            "errors": [e.to_dict() for e in message.errors],
            "shadow": message.shadow.to_dict() if message.shadow is not None else None,
            "policy_set": message.policy_set,
            "evaluation_time_ms": message.evaluation_time_ms,
            "trace": message.trace.to_dict() if message.trace is not None else None,
            "reservation": (
                message.reservation.to_dict() if message.reservation is not None else None
            ),
            "cached": message.cached,
        }
    )


@settings(max_examples=200, deadline=None)
@given(decision=_decisions, request_id=st.text(max_size=10), cached=st.booleans())
def test_decision_encoding_matches_betterproto2(
    decision: Decision, request_id: str, cached: bool
) -> None:
    encoded = _wire.encode_decision(decision, request_id, cached=cached)
    expected = _expected(decision, request_id, cached)
    expected["matched_policies"] = tuple(expected["matched_policies"])
    expected["matched_rules"] = tuple(expected["matched_rules"])
    expected["matched_exceptions"] = tuple(expected["matched_exceptions"])
    expected["warnings"] = tuple(expected["warnings"])
    assert _actual(PbDecision.FromString(encoded)) == expected
    for wrapper in (EvaluatePolicyResponse, EvaluatePolicyStreamResponse):
        unwrapped = wrapper.FromString(_wire.wrap_decision(encoded)).decision
        assert unwrapped is not None
        assert _actual(unwrapped) == expected


def test_decision_encoding_is_byte_identical_for_plain_decisions() -> None:
    decision = Decision(
        decision="warn",
        allowed=True,
        reason="careful",
        matched_policies=("p",),
        matched_rules=("p/r",),
        warnings=("careful",),
        policy_set="sha256:00",
        evaluation_time_ms=0.5,
    )
    reference = PbDecision(
        request_id="r",
        decision="warn",
        allowed=True,
        reason="careful",
        matched_policies=["p"],
        matched_rules=["p/r"],
        warnings=["careful"],
        modifications=Struct(),
        metadata=Struct(),
        policy_set="sha256:00",
        evaluation_time_ms=0.5,
    )
    assert _wire.encode_decision(decision, "r") == bytes(reference)


def test_struct_entries_in_any_field_order_and_last_value_wins() -> None:
    value_then_key = b"\x12\x03\x1a\x01v" + b"\x0a\x01k"  # entry: value first, then key
    twice = b"\x0a\x01n" + b"\x12\x05\x1a\x01a\x20\x01"  # a Value with two kinds: the last wins
    data = b"\x0a" + bytes([len(value_then_key)]) + value_then_key
    data += b"\x0a" + bytes([len(twice)]) + twice
    data += b"\x10\x05"  # an unknown field of Struct, skipped
    assert _wire.decode_struct(data) == {"k": "v", "n": True}


def test_truncated_or_overrunning_structs_are_wire_errors() -> None:
    good = bytes(Struct.from_dict({"a": {"b": [1, "x"]}}))
    for broken in (good[:-1], good[:3], good[:-2] + b"\x0a\x7f"):
        with pytest.raises(_wire.WireError):
            _wire.decode_struct(broken)


def test_the_policy_message_carries_the_shared_policy_resource() -> None:
    record = PolicyRecord(
        id="p1",
        namespace="prod",
        revision=2,
        status="active",
        document={"metadata": {"id": "p1"}, "rules": [{"id": "r", "action": {"decision": "deny"}}]},
        text="{}",
        hash="sha256:x",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        updated_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    )
    shared = PolicyResource.of(record).json()
    message = policy_message(record)
    for name in ("id", "namespace", "revision", "status", "created_at", "updated_at"):
        assert getattr(message, name) == shared[name], name
    assert message.document.to_dict() == shared["document"]
    assert message.etag == "p1:2"
