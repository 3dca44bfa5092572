"""Usage on every stream, end to end with the `openai` SDK: a Chat Completions client that did
not ask for `stream_options.include_usage` gets exactly the stream it asked for while the
gateway asks the upstream for the usage and records its tokens by route, upstream and kind; a
client that asked gets the usage chunk; an upstream with `stream_usage: false` gets the client's
body unchanged; a continued stream records each call's own usage, on Chat Completions and on
Anthropic Messages (whose continuation's `message_start`, holding that call's input tokens,
never reaches the client: the `anthropic` SDK reads one message).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import anthropic
import httpx
import openai
import orjson
import pytest
from structlog.testing import capture_logs

from tests.conftest import UPSTREAM_KEY, RunningGateway, StartGateway
from tests.observability.scrape import finished, total, value
from tests.support import anthropic_wire as claude
from tests.support import fake_upstream as fake
from tests.support.chain_gateway import chain, route, target
from tests.support.fake_upstream import DONE, FakeUpstream
from tests.support.openai_wire import dumps

MODEL = "fake-model"
MESSAGES: list[Any] = [{"role": "user", "content": "hi there"}]
WORDS = ["The ", "quick ", "fox."]
USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 30,
    "total_tokens": 42,
    "prompt_tokens_details": {"cached_tokens": 4},
    "completion_tokens_details": {"reasoning_tokens": 20},
}
KINDS = {"input": 12, "output": 30, "cached": 4, "reasoning": 20}
FAST_MOCK = {"mock": {"kind": "mock", "mock": {"chunk_delay": 0}}}


def usage_chunk(usage: dict[str, Any] = USAGE, model: str = MODEL) -> bytes:
    """OpenAI's usage-only chunk, as it follows the `finish_reason` chunk when asked."""
    chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": fake.CREATED}
    return b"data: " + dumps({**chunk, "model": model, "choices": [], "usage": usage}) + b"\n\n"


ANSWER = fake.openai_chunks(WORDS)  # the text chunks and the finish chunk


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


@pytest.fixture
async def gateway(upstream: FakeUpstream, start_gateway: StartGateway) -> RunningGateway:
    upstream.script(MODEL, fake.sse_stream([*ANSWER, usage_chunk()]))
    return await start_gateway(upstream, models=(MODEL,), heartbeat=None)


@pytest.fixture
async def sdk(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key="k", max_retries=0) as sdk:
        yield sdk


async def chunks_of(sdk: openai.AsyncOpenAI, model: str = MODEL, **fields: Any) -> list[Any]:
    stream = await sdk.chat.completions.create(
        model=model, messages=MESSAGES, stream=True, **fields
    )
    async with stream:
        return [chunk async for chunk in stream]


def tokens(gw: RunningGateway, route: str, upstream: str) -> dict[str, float]:
    found = {
        kind: value(gw, "gateway_tokens_total", route=route, upstream=upstream, kind=kind)
        for kind in ("input", "output", "cached", "reasoning")
    }
    return {kind: count for kind, count in found.items() if count}


def finished_line(logs: list[dict[str, Any]]) -> dict[str, Any]:
    [line] = [entry for entry in logs if entry["event"] == "stream_finished"]
    return line


async def test_a_client_that_did_not_ask_gets_no_usage_chunk_and_its_tokens_are_recorded(
    upstream: FakeUpstream,
    gateway: RunningGateway,
    sdk: openai.AsyncOpenAI,
    logs: list[dict[str, Any]],
) -> None:
    chunks = await chunks_of(sdk)

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "".join(WORDS)
    assert all(c.choices and c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    [call] = upstream.calls_for(MODEL)
    assert call.body["stream_options"] == {"include_usage": True}
    await finished(gateway)
    assert tokens(gateway, MODEL, "fake") == KINDS
    line = finished_line(logs)
    assert line["tokens"] == KINDS
    assert "skipped_events" not in line  # a deliberate drop is not a malformed event
    assert not [entry for entry in logs if entry["event"] == "upstream_event_skipped"]


async def test_the_stream_without_the_usage_chunk_is_otherwise_byte_exact(
    gateway: RunningGateway, client: aiohttp.ClientSession
) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    async with client.post(f"{gateway.url}/v1/chat/completions", json=body) as response:
        received = await response.read()
    assert received == b"".join(ANSWER) + DONE
    await finished(gateway)
    assert value(gateway, "gateway_relayed_events_total", route=MODEL) == len(ANSWER) + 1


async def test_a_client_that_asked_for_usage_gets_the_usage_chunk(
    upstream: FakeUpstream,
    gateway: RunningGateway,
    sdk: openai.AsyncOpenAI,
    logs: list[dict[str, Any]],
) -> None:
    chunks = await chunks_of(sdk, stream_options={"include_usage": True})

    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (12, 30)
    [call] = upstream.calls_for(MODEL)
    assert call.body["stream_options"] == {"include_usage": True}
    await finished(gateway)
    assert tokens(gateway, MODEL, "fake") == KINDS
    assert finished_line(logs)["tokens"] == KINDS


async def test_an_upstream_with_stream_usage_off_gets_the_clients_body_unchanged(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    upstream.script(MODEL, fake.sse_stream(ANSWER))
    plain = {"kind": "openai", "base_url": upstream.base_url, "api_key": UPSTREAM_KEY}
    gw = await start_gateway(
        upstream, models=(MODEL,), upstreams={"fake": {**plain, "stream_usage": False}}
    )
    sent: list[bytes] = []

    async def keep(request: httpx.Request) -> None:
        sent.append(request.content)

    hooks = {"request": [keep]}
    async with (
        httpx.AsyncClient(event_hooks=hooks) as http,
        openai.AsyncOpenAI(
            base_url=gw.base_url, api_key="k", max_retries=0, http_client=http
        ) as sdk,
    ):
        chunks = await chunks_of(sdk)

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "".join(WORDS)
    [call] = upstream.calls_for(MODEL)
    [client_body] = sent
    # The client's JSON, re-serialised compactly as every forwarded body is; nothing added.
    assert call.raw_body == orjson.dumps(json.loads(client_body))
    assert "stream_options" not in call.body
    await finished(gw)
    assert total(gw, "gateway_tokens_total") == 0  # not asked, not reported


async def test_the_mock_answers_the_usage_the_gateway_asks_for(start_gateway: StartGateway) -> None:
    gw = await start_gateway(upstreams=FAST_MOCK)
    async with openai.AsyncOpenAI(base_url=gw.base_url, api_key="k", max_retries=0) as sdk:
        unasked = await chunks_of(sdk, "mock")
        asked = await chunks_of(sdk, "mock", stream_options={"include_usage": True})

    assert all(c.choices and c.usage is None for c in unasked)
    usage = asked[-1].usage
    assert usage is not None
    assert asked[-1].choices == []
    words = sum(1 for c in unasked if c.choices and c.choices[0].delta.content)
    assert usage.completion_tokens == words
    await finished(gw, 2)
    expected = {"input": 2 * usage.prompt_tokens, "output": 2 * usage.completion_tokens}
    assert tokens(gw, "mock", "mock") == expected


async def test_a_continued_stream_records_each_calls_usage_for_its_upstream(
    upstream: FakeUpstream,
    start_gateway: StartGateway,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
) -> None:
    # The first call reports usage on its chunks (as vLLM's continuous usage does), then dies.
    first = fake.openai_chunks(["The ", "quick "], finish_reason=None, model="primary")
    head, last = first[:-1], json.loads(first[-1][len(b"data: ") :])
    last["usage"] = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    first = [*head, b"data: " + dumps(last) + b"\n\n"]
    upstream.script("primary", fake.cut_fin(2, chunked=True, chunks=first))
    second = fake.openai_chunks(["", " fox."], model="backup", id="chatcmpl-second")
    upstream.script("backup", fake.sse_stream([*second, usage_chunk(USAGE, "backup")]))
    settings = chain(
        upstream, route("m", target("primary"), target("backup", "other", prefill=True))
    )
    settings["upstreams"]["other"] = {**settings["upstreams"]["fake"]}
    gw = await start_gateway(None, heartbeat=None, **settings)

    body = {"model": "m", "messages": MESSAGES, "stream": True}
    async with client.post(f"{gw.url}/v1/chat/completions", json=body) as response:
        received = await response.read()

    assert b'"usage":{"prompt_tokens":7' in received  # the first call's chunk, as it came
    assert b'"choices":[]' not in received  # the continuation's usage chunk was asked by us
    assert received.endswith(b'"finish_reason":"stop"}]}\n\n' + DONE)
    [continued] = upstream.calls_for("backup")
    assert continued.body["stream_options"] == {"include_usage": True}
    await finished(gw)
    assert tokens(gw, "m", "fake") == {"input": 7, "output": 2}
    assert tokens(gw, "m", "other") == KINDS
    line = finished_line(logs)
    assert line["continuations"] == 1
    assert line["tokens"] == {"input": 19, "output": 32, "cached": 4, "reasoning": 20}


def cached_message_start(model: str, id: str) -> bytes:
    """A `message_start` whose prompt was partly read from and written to the cache."""
    usage = {
        "input_tokens": 50,
        "cache_read_input_tokens": 8,
        "cache_creation_input_tokens": 2,
        "output_tokens": 1,
    }
    message = {"id": id, "type": "message", "role": "assistant", "model": model, "content": []}
    return claude.event({"type": "message_start", "message": {**message, "usage": usage}})


async def test_a_continued_anthropic_stream_records_each_calls_input_tokens_for_its_upstream(
    upstream: FakeUpstream,
    start_gateway: StartGateway,
    logs: list[dict[str, Any]],
) -> None:
    # Two fake upstreams: the first cuts the stream mid-text, the second continues it.
    first = [
        claude.message_start(model="claude-a", input_tokens=40),
        claude.content_block_start(),
        claude.text_delta("The "),
        claude.text_delta("quick "),
    ]
    upstream.script("claude-a", fake.cut_fin(len(first), chunked=True, chunks=first))
    rest = [
        cached_message_start("claude-b", "msg_second"),
        claude.content_block_start(),
        claude.text_delta(" fox."),
        claude.content_block_stop(),
        claude.message_delta("end_turn", output_tokens=15),
        claude.MESSAGE_STOP,
    ]
    async with FakeUpstream() as other:
        other.script("claude-b", fake.sse_stream(rest, done=False))
        settings = chain(
            upstream,
            route("m", target("claude-a", "claude"), target("claude-b", "claude-b", prefill=True)),
        )
        b = {**settings["upstreams"]["claude"], "base_url": f"http://127.0.0.1:{other.port}"}
        settings["upstreams"]["claude-b"] = b
        gw = await start_gateway(None, heartbeat=None, **settings)
        async with anthropic.AsyncAnthropic(base_url=gw.url, api_key="k", max_retries=0) as sdk:
            stream = await sdk.messages.create(
                model="m", max_tokens=64, messages=MESSAGES, stream=True
            )
            events = [event async for event in stream]
        [continued] = other.calls_for("claude-b")

    assert [event.type for event in events].count("message_start") == 1
    text = "".join(
        event.delta.text
        for event in events
        if event.type == "content_block_delta" and event.delta.type == "text_delta"
    )
    assert text == "The quick fox."
    assert events[0].type == "message_start"
    assert events[0].message.id == "msg_fake"  # the first call's message, continued
    assert events[-1].type == "message_stop"
    assert continued.body["messages"][-1] == {"role": "assistant", "content": "The quick"}
    await finished(gw)
    assert tokens(gw, "m", "claude") == {"input": 40, "output": 1}  # cut before its delta
    assert tokens(gw, "m", "claude-b") == {"input": 60, "output": 15, "cached": 8}
    line = finished_line(logs)
    assert (line["outcome"], line["continuations"]) == ("completed", 1)
    assert line["tokens"] == {"input": 100, "output": 16, "cached": 8}
