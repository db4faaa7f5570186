"""Opaque pagination cursors shared by every adapter: a JSON list, base64url-encoded."""

from __future__ import annotations

import base64
from typing import Any

import msgspec

__all__ = ["decode_cursor", "encode_cursor"]

_encoder = msgspec.json.Encoder()


def encode_cursor(*parts: Any) -> str:
    """An opaque cursor holding `parts` (JSON values), for `next_cursor`."""
    return base64.urlsafe_b64encode(_encoder.encode(list(parts))).decode().rstrip("=")


def decode_cursor(cursor: str, *kinds: type) -> list[Any]:
    """Decode a cursor made by `encode_cursor` whose parts have the given types.

    Raises ValueError when it is not such a cursor (the APIs answer 400).
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = msgspec.json.decode(raw)
    except (ValueError, msgspec.DecodeError):
        parts = None
    if (
        not isinstance(parts, list)
        or len(parts) != len(kinds)
        or not all(
            isinstance(p, k) and not isinstance(p, bool) for p, k in zip(parts, kinds, strict=True)
        )
    ):
        raise ValueError(f"invalid cursor {cursor!r}; pass back a next_cursor unchanged")
    return parts
