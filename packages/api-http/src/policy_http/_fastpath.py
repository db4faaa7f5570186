"""The evaluation fast path: POST /api/v1/evaluate and /evaluate/batch as plain ASGI.

On this 2-core machine Litestar's generic request handling (routing, guard,
kwargs, response objects, exception middleware) costs about 100 µs of CPU
per request, several times the engine itself. The two evaluation routes are
the product's hot path, so the app answers them here, before Litestar's
router, with the same building blocks as every other route: the same
gatekeeper (auth, roles, rate limits), the same `Evaluations` mapping and
context limits, the same problem documents, metrics, spans and request ids.
The Litestar handlers of these routes stay: they describe the routes in the
OpenAPI document and serve what the fast path declines (a non-JSON
Content-Type).

FAST COPY of the Litestar handlers `evaluate` and `evaluate_batch` in
routes_evaluate.py. Parity test:
packages/api-http/tests/test_http_fastpath_parity.py::test_same_status_and_body
(the same payloads, valid and not, through both: same status and body).
A change to either route goes into both.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

import msgspec
from litestar.types import Message, Receive, Send
from loguru import logger

from policy_http._evaluation import Evaluations
from policy_http._guard import Gatekeeper
from policy_http._middleware import incoming_request_id, new_request_id
from policy_http._problems import (
    PROBLEM_MEDIA_TYPE,
    ApiProblem,
    ProblemIssue,
    classify,
    problem_body,
)
from policy_http._runtime import Runtime
from policy_http.schemas import BatchRequest, EvaluateRequest

__all__ = ["FastPath"]

_JSON = b"application/json"
_PROBLEM = PROBLEM_MEDIA_TYPE.encode()
_encoder = msgspec.json.Encoder()


class _Disconnected(Exception):
    pass


def _json_type(value: bytes) -> bool:
    """application/json, or a structured `+json` type (the Litestar handler's)."""
    kind = value.split(b";", 1)[0].strip().lower()
    return kind == _JSON or kind.endswith(b"+json")


def _malformed(exc: msgspec.MsgspecError) -> ApiProblem:
    if isinstance(exc, msgspec.ValidationError):
        message, _, where = str(exc).partition(" - at `")
        issue = ProblemIssue(path=where.rstrip("`"), message=message)
        return ApiProblem(400, "the request is malformed", code="malformed_request", errors=[issue])
    return ApiProblem(400, f"malformed JSON: {exc}", code="malformed_request")


class FastPath:
    """Answers the evaluation routes of one app."""

    def __init__(
        self, rt: Runtime, gatekeeper: Gatekeeper, evaluations: Evaluations, prefix: str
    ) -> None:
        self._gate = gatekeeper
        self._max_body = rt.settings.max_body_bytes
        self._metrics = rt.metrics
        self._telemetry = rt.telemetry
        self._access_log = rt.settings.access_log
        single = msgspec.json.Decoder(EvaluateRequest)
        batch = msgspec.json.Decoder(BatchRequest)

        bounded = evaluations.bounded
        depth = rt.settings.max_context_depth

        def decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
            try:
                return decoder.decode(body)
            except RecursionError:
                # Only the free-form context can nest; msgspec gives up (cleanly)
                # hundreds of levels beyond the context limit.
                raise ApiProblem(
                    422, f"the context nests deeper than {depth} levels", code="context_too_large"
                ) from None

        async def one(body: bytes, rid: str) -> Any:
            return await evaluations.one(decode(single, body), rid, bounded(body))

        async def many(body: bytes, rid: str) -> Any:
            return await evaluations.batch(decode(batch, body), bounded(body))

        self._routes: dict[str, Callable[[bytes, str], Any]] = {
            f"{prefix}/evaluate": one,
            f"{prefix}/evaluate/batch": many,
        }

    def handles(self, scope: Any) -> bool:
        """True for a POST to an evaluation route of JSON, of no declared type, or of a
        type that is not JSON at all (answered 415 here); `+json` types go to Litestar."""
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] not in self._routes
        ):
            return False
        for name, value in scope["headers"]:
            if name == b"content-type":
                return bool(value[:16].lower() == _JSON) or not _json_type(value)
        return True

    @staticmethod
    def _check_type(headers: list[tuple[bytes, bytes]]) -> None:
        for name, value in headers:
            if name == b"content-type" and not _json_type(value):
                raise ApiProblem(
                    415,
                    "send the evaluation request as application/json",
                    code="unsupported_media_type",
                )

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        start = perf_counter()
        path: str = scope["path"]
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        rid = incoming_request_id(headers) or new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        if self._telemetry.enabled:
            carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
            attributes = {"http.request.method": "POST", "http.route": path}
            with self._telemetry.request_span(f"POST {path}", carrier, attributes) as span:
                status = await self._answer(path, headers, rid, state, receive, send)
                span.set_attribute("http.response.status_code", status)
        else:
            status = await self._answer(path, headers, rid, state, receive, send)
        elapsed = perf_counter() - start
        self._metrics.observe_request(path, "POST", status, elapsed)
        if self._access_log:
            principal = state.get("principal")
            logger.bind(
                request_id=rid,
                method="POST",
                route=path,
                status=status,
                duration_ms=round(elapsed * 1000, 3),
                principal=getattr(principal, "id", None),
            ).info("request")

    async def _answer(
        self,
        path: str,
        headers: list[tuple[bytes, bytes]],
        rid: str,
        state: dict[str, Any],
        receive: Receive,
        send: Send,
    ) -> int:
        status, content_type, extra = 200, _JSON, []
        try:
            state["principal"] = await self._gate.admit(headers, "evaluate", "evaluate", rid)
            self._check_type(headers)
            body = await self._read(headers, receive)
            try:
                result = await self._routes[path](body, rid)
            except msgspec.MsgspecError as exc:
                raise _malformed(exc) from None
            except UnicodeDecodeError as exc:
                raise ApiProblem(
                    400,
                    f"the body is not valid UTF-8 (byte {exc.start}); JSON text must be UTF-8",
                    code="malformed_request",
                ) from None
            payload = _encoder.encode(result)
        except _Disconnected:
            return 499  # the client went away; nothing to answer
        except Exception as exc:  # every failure becomes a problem document, as elsewhere
            problem = classify(exc, rid, path)
            status, content_type = problem.status, _PROBLEM
            extra = [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in problem.headers.items()
            ]
            payload = problem_body(
                status,
                problem.detail,
                code=problem.code,
                instance=path,
                request_id=rid,
                errors=problem.errors,
            )
        start: Message = {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", rid.encode()),
                *extra,
            ],
        }
        await send(start)
        await send({"type": "http.response.body", "body": payload, "more_body": False})
        return status

    async def _read(self, headers: list[tuple[bytes, bytes]], receive: Receive) -> bytes:
        """The whole body, refusing (413) more than the limit before reading it when declared."""
        for name, value in headers:
            if name == b"content-length" and value.isdigit() and int(value) > self._max_body:
                raise ApiProblem(413, f"the body exceeds {self._max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
            size += len(chunk)
            if size > self._max_body:
                raise ApiProblem(413, f"the body exceeds {self._max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
