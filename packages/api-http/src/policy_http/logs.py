"""Structured JSON logs with loguru: one JSON object per line, request id included.

The API never logs credentials, request bodies or prompts; as a second line
of defence the sink drops any extra field whose name says it may hold one.
"""

from __future__ import annotations

import sys
import traceback
from typing import IO, Any

import msgspec
from loguru import logger

__all__ = ["SENSITIVE_FIELDS", "configure_json_logging"]

SENSITIVE_FIELDS = frozenset(
    {
        "authorization",
        "token",
        "api_key",
        "x-api-key",
        "secret",
        "password",
        "prompt",
        "context",
        "body",
        "messages",
    }
)

_encoder = msgspec.json.Encoder()


def _json_sink(stream: IO[str]) -> Any:
    def sink(message: Any) -> None:
        record = message.record
        entry: dict[str, Any] = {
            "time": record["time"].isoformat(),
            "level": record["level"].name,
            "message": record["message"],
            "logger": record["name"],
        }
        entry.update(
            (k, v) for k, v in record["extra"].items() if k.lower() not in SENSITIVE_FIELDS
        )
        if record["exception"] is not None:
            exc = record["exception"]
            # The stack, without local variables (loguru's `diagnose` would print them).
            entry["exception"] = "".join(
                traceback.format_exception(exc.type, exc.value, exc.traceback)
            )
        try:
            line = _encoder.encode(entry)
        except (TypeError, msgspec.EncodeError, UnicodeEncodeError):
            # Unencodable extras, or lone surrogates quoted from a request.
            line = _encoder.encode(
                {k: str(v).encode("utf-8", "replace").decode() for k, v in entry.items()}
            )
        stream.write(line.decode() + "\n")
        stream.flush()

    return sink


def configure_json_logging(level: str = "INFO", stream: IO[str] | None = None) -> int:
    """Replace loguru's handlers by one JSON-lines sink; returns the handler id.

    Called by the composition root, never at import time.
    """
    logger.remove()
    return logger.add(
        _json_sink(stream or sys.stderr), level=level.upper(), backtrace=False, diagnose=False
    )
