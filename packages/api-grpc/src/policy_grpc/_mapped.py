"""Every handler's errors through the one status table, without stack traces.

grpclib answers an exception escaping a handler with UNKNOWN "Internal Server
Error" and logs its stack trace. That is what a malformed request to the
stock Health or reflection services produced (their protobuf decoding
raises inside the handler). Wrapping every method of every handler maps
such errors: a request that does not decode is INVALID_ARGUMENT naming the
message type, anything else unexpected INTERNAL (logged in one line).
"""

from __future__ import annotations

import asyncio
from typing import Any

from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from grpclib.const import Handler, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from policy_grpc._status import grpc_error

__all__ = ["mapped_handlers"]

_PASS = (GRPCError, asyncio.CancelledError, StreamTerminatedError)


class _Mapped:
    """A handler whose methods answer every error with a mapped status."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __mapping__(self) -> dict[str, Handler]:
        return {name: _wrap(method) for name, method in self._inner.__mapping__().items()}


def _wrap(method: Handler) -> Handler:
    inner = method.func
    kind = getattr(method.request_type, "__name__", "request")

    async def func(stream: Any) -> None:
        try:
            await inner(stream)
        except _PASS:
            raise
        except DecodeError:
            raise GRPCError(
                Status.INVALID_ARGUMENT, f"the request is not a valid {kind} message"
            ) from None
        except Exception as exc:
            raise grpc_error(exc) from None

    return method._replace(func=func)


def mapped_handlers(handlers: list[Any]) -> list[Any]:
    """`handlers`, each wrapped."""
    return [_Mapped(h) for h in handlers]
