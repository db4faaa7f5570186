"""Opaque cursors for the PostgreSQL adapters: a JSON list, base64url-encoded."""

from __future__ import annotations

import base64
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(_encoder.encode(list(parts))).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    """Decode a cursor made by `encode_cursor`; ValueError when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = msgspec.json.decode(raw)
    except (ValueError, msgspec.DecodeError) as exc:
        raise ValueError(f"invalid cursor {cursor!r}; pass back a next_cursor unchanged") from exc
    if not isinstance(parts, list):
        raise ValueError(f"invalid cursor {cursor!r}; pass back a next_cursor unchanged")
    return parts
