"""Structured JSON logs with loguru: one JSON object per line, request id included.

The API never logs credentials, request bodies or prompts; as a second line
of defence the sink drops any extra field whose name says it may hold one.
"""

from __future__ import annotations

import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import IO, Any

import msgspec
from loguru import logger

__all__ = ["SENSITIVE_FIELDS", "JsonLogFormatter", "configure_json_logging", "stdlib_json_config"]

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

    The standard library's loggers (uvicorn, granian, grpclib, psycopg's pool, the
    embedded PostgreSQL) write JSON lines of the same shape too, so that
    every line on stderr is JSON. Called by the composition root, never at
    import time.
    """
    logger.remove()
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLogFormatter())
    logging.basicConfig(handlers=[handler], level=level.upper(), force=True)
    return logger.add(_json_sink(out), level=level.upper(), backtrace=False, diagnose=False)


class JsonLogFormatter(logging.Formatter):
    """A standard-library record as one JSON line (time, level, message, logger).

    An exception is reduced to its type and message: stack traces do not go
    to the log as text spread over many lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            entry["error"] = f"{type(exc).__name__}: {exc}"
        try:
            return _encoder.encode(entry).decode()
        except (TypeError, msgspec.EncodeError, UnicodeEncodeError):
            return _encoder.encode(
                {k: str(v).encode("utf-8", "replace").decode() for k, v in entry.items()}
            ).decode()


def stdlib_json_config(level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` with every logger writing JSON lines to stderr
    (the HTTP server's processes take one: uvicorn's and granian's own defaults write
    plain text)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLogFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            name: {"handlers": ["stderr"], "level": level.upper(), "propagate": False}
            for name in (
                "uvicorn",
                "uvicorn.error",
                "uvicorn.access",
                "_granian",
                "granian.access",
                "granian",
            )
        },
    }
