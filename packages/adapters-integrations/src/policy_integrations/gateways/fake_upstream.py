"""A local fake OpenAI-compatible upstream (127.0.0.1 only) for gateway tests and benches.

`FakeUpstream` answers `POST /v1/chat/completions` as a model provider does: a JSON
completion, or with `stream: true` server-sent events (`chat.completion.chunk`
objects, a usage chunk when `stream_options.include_usage` is set, then
`data: [DONE]`). `GET /v1/models` lists `models`.

What the model "says" is chosen by the test: `reply` is the default `Reply`,
`script(request_body) -> Reply | None` may pick one per request (e.g. by a marker
in the last message), and `queue(...)` gives the next requests their replies in
order. The text of a streamed reply is cut into chunks of `chunk_size` characters,
so a test controls where a span falls. Every request received is kept in
`requests` (path, headers, decoded body), so a test can assert that a denied
request never arrived and that a modified one arrived rewritten.

`ThreadedFakeUpstream` runs one on its own loop in a daemon thread, for sync
clients and for servers in other processes (a gateway under test).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FakeUpstream", "RecordedRequest", "Reply", "ThreadedFakeUpstream", "estimate_tokens"]


def estimate_tokens(text: str) -> int:
    """The fake's token count: one token per started 4 characters (at least 1)."""
    return max(1, (len(text) + 3) // 4)


@dataclass(frozen=True, kw_only=True)
class Reply:
    """One scripted answer.

    `prompt_tokens` / `completion_tokens` default to `estimate_tokens` of the
    request's message texts and of `text`. `tool_calls` are `{"name", "arguments"}`
    dicts (arguments a JSON string). `status` other than 200 answers an OpenAI-style
    error body with `error_message`. `delay` seconds pass before the answer starts,
    `chunk_delay` between streamed chunks (benches; tests leave them 0).
    """

    text: str = "Hello from the fake upstream."
    chunk_size: int = 8
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tool_calls: tuple[dict[str, str], ...] = ()
    status: int = 200
    error_message: str = "upstream error"
    delay: float = 0.0
    chunk_delay: float = 0.0

    def chunks(self) -> list[str]:
        size = max(1, self.chunk_size)
        return [self.text[i : i + size] for i in range(0, len(self.text), size)]


@dataclass(frozen=True, kw_only=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any = None

    def last_user_text(self) -> str:
        """The text of the last `user` message of a chat request ('' if none)."""
        messages = self.body.get("messages", []) if isinstance(self.body, dict) else []
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return _content_text(message.get("content"))
        return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _prompt_text(body: dict[str, Any]) -> str:
    messages = body.get("messages", [])
    return "\n".join(_content_text(m.get("content")) for m in messages if isinstance(m, dict))


@dataclass
class FakeUpstream:
    reply: Reply = field(default_factory=Reply)
    script: Callable[[dict[str, Any]], Reply | None] | None = None
    models: tuple[str, ...] = ("fake-large", "fake-small")
    requests: list[RecordedRequest] = field(default_factory=list)
    url: str = ""
    _queued: collections.deque[Reply] = field(default_factory=collections.deque)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI `base_url` (`.../v1`)."""
        return f"{self.url}/v1"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/chat/completions"]

    def queue(self, *replies: Reply) -> None:
        """The next requests (without a `script` answer) get these replies, in order."""
        self._queued.extend(replies)

    def clear(self) -> None:
        self.requests.clear()
        self._queued.clear()

    def _choose(self, body: dict[str, Any]) -> Reply:
        if self.script is not None:
            chosen = self.script(body)
            if chosen is not None:
                return chosen
        return self._queued.popleft() if self._queued else self.reply

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        self.requests.append(
            RecordedRequest(
                method=request.method, path=request.path, headers=dict(request.headers), body=body
            )
        )
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "the body must be a JSON object with a messages list")
        reply = self._choose(body)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return _error(reply.status, reply.error_message)
        completion_id = f"chatcmpl-fake-{next(self._ids)}"
        model = str(body.get("model", "fake"))
        usage = _usage(reply, body)
        if body.get("stream"):
            options = body.get("stream_options") or {}
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            return await _stream(
                request, reply, completion_id, model, usage if include_usage else None
            )
        return web.json_response(_completion(reply, completion_id, model, usage))

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            RecordedRequest(method=request.method, path=request.path, headers=dict(request.headers))
        )
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def start(self) -> FakeUpstream:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeUpstream:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()


def _error(status: int, message: str) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}
    return web.json_response(body, status=status)


def _usage(reply: Reply, body: dict[str, Any]) -> dict[str, int]:
    prompt = reply.prompt_tokens
    if prompt is None:
        prompt = estimate_tokens(_prompt_text(body))
    completion = reply.completion_tokens
    if completion is None:
        completion = estimate_tokens(reply.text)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
    return [
        {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": call["name"], "arguments": call.get("arguments", "{}")},
        }
        for i, call in enumerate(reply.tool_calls)
    ]


def _completion(
    reply: Reply, completion_id: str, model: str, usage: dict[str, int]
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.tool_calls:
        message["tool_calls"] = _tool_calls(reply)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        "usage": usage,
    }


def _chunk(
    completion_id: str, model: str, delta: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


async def _stream(
    request: web.Request,
    reply: Reply,
    completion_id: str,
    model: str,
    usage: dict[str, int] | None,
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)

    async def send(payload: dict[str, Any] | str) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        await response.write(f"data: {data}\n\n".encode())

    await send(_chunk(completion_id, model, {"role": "assistant", "content": ""}))
    for piece in reply.chunks():
        if reply.chunk_delay:
            await asyncio.sleep(reply.chunk_delay)
        await send(_chunk(completion_id, model, {"content": piece}))
    if reply.tool_calls:
        calls = [dict(call, index=i) for i, call in enumerate(_tool_calls(reply))]
        await send(_chunk(completion_id, model, {"tool_calls": calls}))
    await send(_chunk(completion_id, model, {}, reply.finish_reason))
    if usage is not None:
        await send({**_chunk(completion_id, model, {}), "choices": [], "usage": usage})
    await send("[DONE]")
    await response.write_eof()
    return response


class ThreadedFakeUpstream:
    """A FakeUpstream on its own event loop in a daemon thread.

    `with ThreadedFakeUpstream() as upstream:` serves until the block ends. Its
    `reply`, `script` and queue may be changed from the caller's thread between
    requests; `requests` is appended by the server thread (list appends are atomic).
    """

    def __init__(self, upstream: FakeUpstream | None = None) -> None:
        self.upstream = upstream if upstream is not None else FakeUpstream()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.upstream.url

    @property
    def base_url(self) -> str:
        return self.upstream.base_url

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.upstream.requests

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return self.upstream.chat_requests

    @property
    def reply(self) -> Reply:
        return self.upstream.reply

    @reply.setter
    def reply(self, reply: Reply) -> None:
        self.upstream.reply = reply

    @property
    def script(self) -> Callable[[dict[str, Any]], Reply | None] | None:
        return self.upstream.script

    @script.setter
    def script(self, script: Callable[[dict[str, Any]], Reply | None] | None) -> None:
        self.upstream.script = script

    def queue(self, *replies: Reply) -> None:
        self.upstream.queue(*replies)  # deque.extend is atomic

    def clear(self) -> None:
        self.upstream.clear()

    def start(self) -> ThreadedFakeUpstream:
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self.upstream.start())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the fake upstream did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.upstream.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._thread = None

    def __enter__(self) -> ThreadedFakeUpstream:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
