"""Translation between APIs through the gateway (issue 13), with the real SDKs as clients and
fake upstreams that each speak one API in the exact shapes of the real providers.

Every pairing: an OpenAI Chat client on an Anthropic upstream, an Anthropic client on an
OpenAI Chat upstream, a Responses client on each. What the client sees is a well-formed stream
of its own API that its SDK's accumulator turns into the final answer (text, tool calls with
their arguments, stop reason, usage); a cut upstream is an error, never a complete answer; a
parameter the target cannot honour is a 400 naming it unless the route drops it; a mixed chain
fails over from one provider to the other before the first byte.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import UPSTREAM_KEY, RunningGateway, StartGateway
from tests.e2e.test_responses_clients import NODE_DIR, node_client
from tests.observability.scrape import value
from tests.support import anthropic_wire as claude
from tests.support.chain_gateway import chain, route, target
from tests.support.client_process import run_json_client
from tests.support.fake_upstream import FakeUpstream, sse_stream, status
from tests.support.openai_wire import chunk_event, completion, dumps, openai_chunks

DONE = b"data: [DONE]\n\n"


def usage_chunk(prompt: int = 11, completion_tokens: int = 3, cached: int = 4) -> bytes:
    chunk = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-x",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }
    return b"data: " + dumps(chunk) + b"\n\n"


def claude_tool_stream() -> list[bytes]:
    """An Anthropic stream: a text block, then a `tool_use` block whose input streams in two
    `input_json_delta`s, ended by `tool_use`."""
    tool = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}
    return [
        claude.message_start(model="claude-3", input_tokens=30),
        claude.content_block_start(0),
        claude.text_delta("Let me check."),
        claude.content_block_stop(0),
        claude.event({"type": "content_block_start", "index": 1, "content_block": tool}),
        claude.event(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"city": "Par'},
            }
        ),
        claude.event(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": 'is"}'},
            }
        ),
        claude.content_block_stop(1),
        claude.message_delta("tool_use", output_tokens=12),
        claude.MESSAGE_STOP,
    ]


def openai_tool_stream() -> list[bytes]:
    """An OpenAI Chat stream of two parallel tool calls whose argument deltas interleave."""
    first = {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
    }
    second = {
        "index": 1,
        "id": "call_b",
        "type": "function",
        "function": {"name": "g", "arguments": ""},
    }
    return [
        chunk_event(
            {"role": "assistant", "content": None, "tool_calls": [first]}, None, "gpt-x", "c1"
        ),
        chunk_event({"tool_calls": [second]}, None, "gpt-x", "c1"),
        chunk_event(
            {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}, None, "gpt-x", "c1"
        ),
        chunk_event(
            {"tool_calls": [{"index": 1, "function": {"arguments": '{"b":2}'}}]},
            None,
            "gpt-x",
            "c1",
        ),
        chunk_event(
            {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}, None, "gpt-x", "c1"
        ),
        chunk_event({}, "tool_calls", "gpt-x", "c1"),
        usage_chunk(),
        DONE,
    ]


ROUTES = (
    route("gpt-on-claude", target("claude-3", "claude")),
    route("gpt-on-claude-lenient", target("claude-3", "claude"), drop_params=True),
    route("claude-on-gpt", target("gpt-x", "fake")),
    route("responses-on-claude", target("claude-3", "claude")),
    route("responses-on-chat", target("gpt-x", "chatonly")),
    route("mixed", target("down", "fake"), target("claude-3", "claude")),
    route("continued", target("gpt-cut", "fake"), target("claude-3", "claude", prefill=True)),
)


@pytest.fixture
async def gateway(upstream: FakeUpstream, start_gateway: StartGateway) -> RunningGateway:
    settings = chain(upstream, *ROUTES)
    settings["upstreams"]["chatonly"] = {
        "kind": "openai",
        "base_url": upstream.base_url,
        "api_key": UPSTREAM_KEY,
        "apis": ["chat_completions"],
    }
    settings["retry"] = {"attempts": 1}
    return await start_gateway(None, **settings)


@pytest.fixture
async def oai(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key="unused", max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def ant(gateway: RunningGateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key="unused", max_retries=0
    ) as client:
        yield client


async def collect_text(stream: openai.AsyncStream[Any], into: list[str]) -> None:
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            into.append(chunk.choices[0].delta.content)


def claude_says(upstream: FakeUpstream, texts: list[str], **fields: Any) -> None:
    upstream.script(
        "claude-3",
        sse_stream(claude.anthropic_events(texts, model="claude-3", **fields), done=False),
    )


# --- OpenAI Chat client, Anthropic upstream ------------------------------------------------


async def test_a_chat_stream_is_served_by_an_anthropic_upstream(
    oai: openai.AsyncOpenAI, upstream: FakeUpstream, gateway: RunningGateway
) -> None:
    claude_says(upstream, ["Hel", "lo", "!"])
    async with oai.chat.completions.stream(
        model="gpt-on-claude",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ],
        stream_options={"include_usage": True},
    ) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    assert final.choices[0].message.content == "Hello!"
    assert final.choices[0].finish_reason == "stop"
    assert final.model == "gpt-on-claude"
    assert final.usage is not None
    assert final.usage.prompt_tokens == 25
    call = upstream.calls_for("claude-3")[0]
    assert call.path == "/v1/messages"
    assert call.body["system"] == "Be brief." or call.body["system"][0]["text"] == "Be brief."
    assert (
        call.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
        or call.body["messages"][0]["role"] == "user"
    )
    assert call.body["max_tokens"] == 4096  # the target's default: Anthropic requires one
    assert call.body["stream"] is True
    assert (
        value(
            gateway, "gateway_tokens_total", route="gpt-on-claude", upstream="claude", kind="input"
        )
        == 25
    )


async def test_a_chat_client_gets_an_anthropic_tool_call_as_its_own(
    oai: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.script("claude-3", sse_stream(claude_tool_stream(), done=False))
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    async with oai.chat.completions.stream(
        model="gpt-on-claude", messages=[{"role": "user", "content": "weather?"}], tools=tools
    ) as stream:
        final = await stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Let me check."
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    (call,) = message.tool_calls
    assert call.id == "toolu_01"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    sent = upstream.calls_for("claude-3")[0].body
    assert sent["tools"][0]["name"] == "get_weather"
    assert sent["tools"][0]["input_schema"]["properties"] == {"city": {"type": "string"}}


async def test_a_whole_chat_answer_is_served_by_an_anthropic_upstream(
    oai: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(
        "claude-3", status(200, body=claude.anthropic_message("Hi there", model="claude-3"))
    )
    answer = await oai.chat.completions.create(
        model="gpt-on-claude", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content == "Hi there"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.object == "chat.completion"


async def test_a_cut_anthropic_stream_is_an_error_for_the_chat_client_never_a_complete_answer(
    oai: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    claude_says(upstream, ["Hel", "lo"], stop_reason=None, stop=False)
    stream = await oai.chat.completions.create(
        model="gpt-on-claude", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    texts: list[str] = []
    with pytest.raises(openai.APIError) as raised:
        await collect_text(stream, texts)
    assert not isinstance(raised.value, openai.APIStatusError)
    assert raised.value.code == "upstream_truncated"
    assert "".join(texts) == "Hello"


async def test_an_anthropic_error_event_mid_stream_is_the_chat_clients_error(
    oai: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    events = claude.anthropic_events(["Hel"], stop_reason=None, stop=False, model="claude-3")
    upstream.script("claude-3", sse_stream([*events, claude.error_event()], done=False))
    stream = await oai.chat.completions.create(
        model="gpt-on-claude", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


async def test_a_parameter_anthropic_cannot_honour_is_a_400_naming_it_unless_dropped(
    oai: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    claude_says(upstream, ["ok"])
    with pytest.raises(openai.BadRequestError) as raised:
        await oai.chat.completions.create(
            model="gpt-on-claude", messages=[{"role": "user", "content": "hi"}], logprobs=True
        )
    assert raised.value.param == "logprobs"
    assert raised.value.code == "unsupported_parameter"
    assert upstream.calls_for("claude-3") == []
    upstream.script("claude-3", status(200, body=claude.anthropic_message("ok", model="claude-3")))
    answer = await oai.chat.completions.create(
        model="gpt-on-claude-lenient", messages=[{"role": "user", "content": "hi"}], logprobs=True
    )
    assert answer.choices[0].message.content == "ok"
    assert "logprobs" not in upstream.calls_for("claude-3")[0].body


async def test_an_upstream_refusal_before_the_stream_is_the_chat_clients_typed_error(
    oai: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(
        "claude-3",
        status(
            429,
            body=json.dumps(claude.anthropic_error("rate_limit_error", "slow down")).encode(),
            headers={"retry-after": "3"},
        ),
    )
    with pytest.raises(openai.RateLimitError):
        await oai.chat.completions.create(
            model="gpt-on-claude", messages=[{"role": "user", "content": "hi"}]
        )


async def test_a_mixed_chain_fails_over_from_openai_to_anthropic(
    oai: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.script("down", status(503))
    claude_says(upstream, ["from ", "claude"])
    stream = await oai.chat.completions.create(
        model="mixed", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = ""
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    assert text == "from claude"
    assert len(upstream.calls_for("down")) == 1
    assert upstream.calls_for("claude-3")[0].path == "/v1/messages"


async def test_a_cut_openai_stream_is_continued_by_prefill_on_an_anthropic_target(
    oai: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    cut = openai_chunks(["The ", "quick "], finish_reason=None, model="gpt-cut")
    upstream.script("gpt-cut", sse_stream(cut, done=False))  # ends short: no finish_reason
    claude_says(upstream, ["brown ", "fox."])
    stream = await oai.chat.completions.create(
        model="continued", messages=[{"role": "user", "content": "go"}], stream=True
    )
    texts: list[str] = []
    finish = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            texts.append(chunk.choices[0].delta.content)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish.append(chunk.choices[0].finish_reason)
    assert "".join(texts) == "The quick brown fox."
    assert finish == ["stop"]
    sent = upstream.calls_for("claude-3")[0]
    assert sent.path == "/v1/messages"
    last = sent.body["messages"][-1]
    assert last["role"] == "assistant"
    assert "The quick" in json.dumps(last["content"])  # the text so far, as the prefill


# --- Anthropic client, OpenAI Chat upstream ------------------------------------------------


async def test_a_messages_stream_is_served_by_an_openai_chat_upstream(
    ant: anthropic.AsyncAnthropic, upstream: FakeUpstream
) -> None:
    upstream.script(
        "gpt-x",
        sse_stream([*openai_chunks(["Hel", "lo"], model="gpt-x"), usage_chunk()], done=True),
    )
    async with ant.messages.stream(
        model="claude-on-gpt",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "hi"}],
    ) as stream:
        final = await stream.get_final_message()
    assert [block.type for block in final.content] == ["text"]
    assert final.content[0].text == "Hello"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3
    call = upstream.calls_for("gpt-x")[0]
    assert call.path == "/v1/chat/completions"
    assert call.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert call.body["max_tokens"] == 100 or call.body.get("max_completion_tokens") == 100


async def test_an_anthropic_client_gets_parallel_openai_tool_calls_as_tool_use_blocks(
    ant: anthropic.AsyncAnthropic, upstream: FakeUpstream
) -> None:
    upstream.script("gpt-x", sse_stream(openai_tool_stream(), done=False))
    async with ant.messages.stream(
        model="claude-on-gpt",
        max_tokens=100,
        messages=[{"role": "user", "content": "go"}],
        tools=[
            {"name": "f", "input_schema": {"type": "object"}},
            {"name": "g", "input_schema": {"type": "object"}},
        ],
    ) as stream:
        final = await stream.get_final_message()
    uses = [block for block in final.content if block.type == "tool_use"]
    assert [(use.id, use.name, use.input) for use in uses] == [  # type: ignore[union-attr]
        ("call_a", "f", {"a": 1}),
        ("call_b", "g", {"b": 2}),
    ]
    assert final.stop_reason == "tool_use"


async def test_a_messages_parameter_openai_cannot_honour_is_anthropics_invalid_request_error(
    ant: anthropic.AsyncAnthropic, upstream: FakeUpstream
) -> None:
    with pytest.raises(anthropic.BadRequestError) as raised:
        await ant.messages.create(
            model="claude-on-gpt",
            max_tokens=50,
            extra_body={"top_k": 5},
            messages=[{"role": "user", "content": "hi"}],
        )
    error = raised.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error"
    assert "top_k" in error["message"]
    assert upstream.calls_for("gpt-x") == []


async def test_a_whole_messages_answer_is_served_by_an_openai_chat_upstream(
    ant: anthropic.AsyncAnthropic, upstream: FakeUpstream
) -> None:
    upstream.script("gpt-x", status(200, body=completion("Hi there", "gpt-x")))
    message = await ant.messages.create(
        model="claude-on-gpt", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text == "Hi there"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"


# --- Responses client -----------------------------------------------------------------------


async def test_a_responses_stream_is_served_by_an_anthropic_upstream(
    oai: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    claude_says(upstream, ["Hel", "lo"])
    async with oai.responses.stream(model="responses-on-claude", input="hi") as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_response()
    assert final.output_text == "Hello"
    assert final.status == "completed"
    assert upstream.calls_for("claude-3")[0].path == "/v1/messages"


async def test_a_responses_stream_is_served_by_a_chat_only_upstream(
    oai: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(
        "gpt-x",
        sse_stream([*openai_chunks(["Hel", "lo"], model="gpt-x"), usage_chunk()], done=True),
    )
    async with oai.responses.stream(
        model="responses-on-chat", input="hi", instructions="Be brief."
    ) as stream:
        final = await stream.get_final_response()
    assert final.output_text == "Hello"
    assert final.usage is not None
    assert final.usage.input_tokens == 11
    call = upstream.calls_for("gpt-x")[0]
    assert call.path == "/v1/chat/completions"
    assert call.body["messages"][0] == {"role": "system", "content": "Be brief."}


async def test_a_translated_responses_turn_cannot_continue_a_stored_conversation(
    oai: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await oai.responses.create(
            model="responses-on-claude", input="again", previous_response_id="resp_x"
        )
    assert raised.value.param == "previous_response_id"
    assert upstream.calls_for("claude-3") == []


async def test_the_vercel_ai_sdk_gets_a_tool_call_from_an_anthropic_upstream(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    command = node_client()
    upstream.script("claude-3", sse_stream(claude_tool_stream(), done=False))
    async with asyncio.timeout(30):
        report: dict[str, Any] = await run_json_client(
            *command, gateway.base_url, "responses-on-claude", "tools", cwd=NODE_DIR
        )
    assert report["errors"] == []
    assert report["text"] == "Let me check."
    assert report["toolCalls"] == [{"toolName": "get_weather", "input": {"city": "Paris"}}]
    assert report["finishReason"] == "tool-calls"
    sent = upstream.calls_for("claude-3")[0].body
    assert sent["tools"][0]["name"] == "get_weather"
