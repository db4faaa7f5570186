"""The fake OpenAI-compatible upstream speaks what the stock openai client expects."""

from __future__ import annotations

import json

import aiohttp
import openai
import pytest
from policy_integrations.gateways.fake_upstream import (
    FakeUpstream,
    Reply,
    ThreadedFakeUpstream,
    estimate_tokens,
)


async def test_json_completion_with_usage_and_recorded_request() -> None:
    async with FakeUpstream(reply=Reply(text="hi there", prompt_tokens=7)) as upstream:
        client = openai.AsyncOpenAI(base_url=upstream.base_url, api_key="k", max_retries=0)
        completion = await client.chat.completions.create(
            model="fake-large", messages=[{"role": "user", "content": "hello"}], max_tokens=5
        )
        await client.close()
    assert completion.choices[0].message.content == "hi there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (7, 2)
    assert completion.usage.total_tokens == 9
    (recorded,) = upstream.chat_requests
    assert recorded.body["max_tokens"] == 5
    assert recorded.body["model"] == "fake-large"
    assert recorded.last_user_text() == "hello"
    assert recorded.headers["Authorization"] == "Bearer k"


async def test_stream_chunks_of_chosen_size_usage_chunk_and_done() -> None:
    reply = Reply(text="abcdefghij", chunk_size=3, completion_tokens=4)
    async with FakeUpstream(reply=reply) as upstream:
        client = openai.AsyncOpenAI(base_url=upstream.base_url, api_key="k", max_retries=0)
        stream = await client.chat.completions.create(
            model="fake-small",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        await client.close()
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert pieces == ["abc", "def", "ghi", "j"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert chunks[-1].usage.prompt_tokens == estimate_tokens("x")


async def test_raw_sse_ends_with_done_and_no_usage_unless_asked() -> None:
    async with FakeUpstream(reply=Reply(text="ok")) as upstream, aiohttp.ClientSession() as http:
        body = {"model": "m", "messages": [{"role": "user", "content": "q"}], "stream": True}
        async with http.post(f"{upstream.base_url}/chat/completions", json=body) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            text = await response.text()
    events = [line.removeprefix("data: ") for line in text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    decoded = [json.loads(e) for e in events[:-1]]
    assert all("usage" not in e for e in decoded)
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in decoded) == "ok"


async def test_script_queue_errors_tool_calls_and_models() -> None:
    def script(body: dict[str, object]) -> Reply | None:
        return Reply(text="scripted") if "MARK" in json.dumps(body) else None

    async with FakeUpstream(script=script) as upstream:
        upstream.queue(Reply(text="first"), Reply(status=503, error_message="overloaded"))
        client = openai.AsyncOpenAI(base_url=upstream.base_url, api_key="k", max_retries=0)

        async def ask(text: str) -> str | None:
            completion = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": text}]
            )
            return completion.choices[0].message.content

        assert await ask("MARK") == "scripted"
        assert await ask("a") == "first"
        with pytest.raises(openai.InternalServerError, match="overloaded") as raised:
            await ask("b")
        assert raised.value.status_code == 503
        assert await ask("c") == upstream.reply.text
        upstream.reply = Reply(text="", tool_calls=({"name": "lookup", "arguments": '{"q": 1}'},))
        completion = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "d"}]
        )
        models = await client.models.list()
        await client.close()
    calls = completion.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].function.name == "lookup"
    assert calls[0].function.arguments == '{"q": 1}'
    assert [m.id for m in models.data] == ["fake-large", "fake-small"]
    assert [r.last_user_text() for r in upstream.chat_requests] == ["MARK", "a", "b", "c", "d"]


def test_threaded_upstream_serves_a_sync_client() -> None:
    with ThreadedFakeUpstream() as upstream:
        upstream.reply = Reply(text="from a thread", chunk_size=4)
        client = openai.OpenAI(base_url=upstream.base_url, api_key="k", max_retries=0)
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        client.close()
        assert len(upstream.chat_requests) == 1
    assert text == "from a thread"
