"""Usage on every stream, the API's part: asking an OpenAI stream for the usage its client did
not ask for (`stream_usage_fields`, `CallTemplate.for_target`), dropping only the chunk that
answers the gateway's question (the tracker), the mock answering it as OpenAI does, and the
tokens every dialect reads by kind.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import orjson
import pytest

from gateway.apis import (
    ANTHROPIC_MESSAGES,
    OPENAI_CHAT,
    OPENAI_COMPLETIONS,
    OPENAI_EMBEDDINGS,
    OPENAI_RESPONSES,
)
from gateway.apis.openai_chat import OpenAIMockWire, stream_usage_fields
from gateway.apis.openai_completions.mock_wire import CompletionsMockWire
from gateway.routing import CallTemplate
from gateway.streaming import SSEDecoder, SSEEvent, Verdict
from tests.routing.fake_provider import build_route

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 30,
    "total_tokens": 42,
    "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 20},
}


def sse(payload: dict[str, Any] | str) -> SSEEvent:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return SSEEvent(raw=f"data: {data}\n\n".encode(), data=data)


def chunk(finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": {"content": "hi"}, "finish_reason": finish_reason}
    return {"id": "c", "object": "chat.completion.chunk", "choices": [choice], **extra}


USAGE_CHUNK = {"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": USAGE}


# --- the body hook --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "asked"),
    [
        (None, {"include_usage": True}),
        ({}, {"include_usage": True}),
        ({"include_usage": False}, {"include_usage": True}),
        ({"include_obfuscation": False}, {"include_obfuscation": False, "include_usage": True}),
        ("nonsense", {"include_usage": True}),
    ],
    ids=["absent", "empty", "false", "other-options-kept", "not-an-object"],
)
def test_a_stream_that_did_not_ask_for_usage_is_asked(options: Any, asked: Any) -> None:
    body = {"messages": MESSAGES} if options is None else {"stream_options": options}
    assert stream_usage_fields(body) == {"stream_options": asked}


def test_a_stream_whose_client_asked_for_usage_is_left_as_it_is() -> None:
    body = {"stream_options": {"include_usage": True, "include_obfuscation": False}}
    assert stream_usage_fields(body) is None


def test_the_openai_streaming_apis_ask_and_the_others_do_not() -> None:
    assert OPENAI_CHAT.stream_usage is stream_usage_fields
    assert OPENAI_COMPLETIONS.stream_usage is stream_usage_fields
    # Responses and Anthropic streams report their usage unasked; embeddings never stream.
    assert OPENAI_RESPONSES.stream_usage is None
    assert ANTHROPIC_MESSAGES.stream_usage is None
    assert OPENAI_EMBEDDINGS.stream_usage is None


def template(body: dict[str, Any], *, stream: bool = True) -> CallTemplate:
    return CallTemplate("/chat/completions", body, "m", stream, OPENAI_CHAT)


def test_a_streaming_call_asks_its_target_for_usage_keeping_the_clients_fields() -> None:
    route = build_route("up")
    body = {"model": "m", "messages": MESSAGES, "stream": True, "stream_options": {"x": 1}}

    call = template(body).for_target(route, route.targets[0])

    sent = json.loads(call.body)
    assert sent == {**body, "stream_options": {"x": 1, "include_usage": True}}
    assert list(sent) == list(body)  # the client's field replaced where it was


def test_a_call_to_a_target_with_stream_usage_off_sends_the_clients_body() -> None:
    route = build_route("up")
    target = dataclasses.replace(route.targets[0], stream_usage=False)
    body = {"model": "m", "messages": MESSAGES, "stream": True}

    call = template(body).for_target(route, target)

    assert call.body == orjson.dumps(body)
    assert template(body).usage_fields(target) is None


@pytest.mark.parametrize(
    ("body", "stream"),
    [
        ({"model": "m", "messages": MESSAGES, "stream": False}, False),
        ({"model": "m", "messages": MESSAGES, "stream_options": {"include_usage": True}}, True),
    ],
    ids=["not-a-stream", "client-asked"],
)
def test_a_call_that_needs_no_asking_sends_the_clients_body(
    body: dict[str, Any], stream: bool
) -> None:
    route = build_route("up")
    call = template(body, stream=stream).for_target(route, route.targets[0])
    assert call.body == orjson.dumps(body)


def test_a_continuation_body_is_asked_too() -> None:
    route = build_route("up")
    client = {"model": "m", "messages": MESSAGES, "stream": True}
    prefilled = {**client, "messages": [*MESSAGES, {"role": "assistant", "content": "so"}]}

    call = template(client).for_target(route, route.targets[0], prefilled)

    sent = json.loads(call.body)
    assert sent["messages"] == prefilled["messages"]
    assert sent["stream_options"] == {"include_usage": True}


# --- the tracker ----------------------------------------------------------------------------


def test_the_usage_chunk_the_gateway_asked_for_is_dropped_and_its_usage_kept() -> None:
    tracker = OPENAI_CHAT.dialect.tracker()
    tracker.unasked_usage = True

    verdicts = [tracker.inspect(sse(c)) for c in (chunk(), chunk("stop"), USAGE_CHUNK)]

    assert verdicts == [Verdict.FORWARD, Verdict.FORWARD, Verdict.DROP]
    assert tracker.usage == USAGE
    assert tracker.skipped == 0  # not malformed
    assert tracker.inspect(sse("[DONE]")) is Verdict.END


def test_a_usage_chunk_the_client_asked_for_is_forwarded() -> None:
    tracker = OPENAI_CHAT.dialect.tracker()
    assert tracker.inspect(sse(USAGE_CHUNK)) is Verdict.FORWARD
    assert tracker.usage == USAGE


@pytest.mark.parametrize(
    "event",
    [
        chunk(usage=USAGE),  # usage on a chunk with content (vLLM's continuous usage)
        chunk(usage=None),  # OpenAI's `usage: null` on every other chunk
        {"choices": [], "usage": None},
        {"error": {"message": "boom"}, "usage": USAGE},
    ],
    ids=["content-with-usage", "null-usage", "no-choices-null-usage", "error"],
)
def test_only_a_chunk_that_carries_nothing_but_usage_is_dropped(event: dict[str, Any]) -> None:
    tracker = OPENAI_CHAT.dialect.tracker()
    tracker.unasked_usage = True
    assert tracker.inspect(sse(event)) in (Verdict.FORWARD, Verdict.END_WITH_ERROR)


def test_a_malformed_event_is_still_skipped_and_counted_when_usage_was_asked() -> None:
    tracker = OPENAI_CHAT.dialect.tracker()
    tracker.unasked_usage = True
    assert tracker.inspect(sse("{not json")) is Verdict.SKIP
    assert tracker.skipped == 1


# --- the mock -------------------------------------------------------------------------------


def decoded(frames: list[bytes]) -> list[dict[str, Any]]:
    decoder = SSEDecoder()
    events = [event for frame in frames for event in decoder.feed(frame)]
    return [json.loads(event.data or "") for event in events]


@pytest.mark.parametrize("wire_of", [OpenAIMockWire, CompletionsMockWire])
def test_the_mock_sends_the_usage_chunk_only_when_asked(wire_of: Any) -> None:
    asked = wire_of("mock", {"stream_options": {"include_usage": True}})
    asked.text("a")
    asked.text(" b")
    *finish, usage = decoded(asked.closing())
    assert [f["choices"][0]["finish_reason"] for f in finish] == ["stop"]
    assert usage["choices"] == []
    assert (usage["usage"]["prompt_tokens"], usage["usage"]["completion_tokens"]) == (8, 2)
    assert usage["id"] == finish[0]["id"]

    unasked = wire_of("mock", {"stream_options": {"include_usage": False}})
    assert [c["choices"][0]["finish_reason"] for c in decoded(unasked.closing())] == ["stop"]


def test_the_mock_chat_usage_reports_every_kind() -> None:
    wire = OpenAIMockWire("mock", {"stream_options": {"include_usage": True}})
    wire.text("a")
    usage = decoded(wire.closing())[-1]["usage"]
    assert OPENAI_CHAT.dialect.tokens(usage) == {
        "input": 8,
        "output": 1,
        "cached": 0,
        "reasoning": 0,
    }


# --- tokens by kind -------------------------------------------------------------------------


def test_openai_chat_tokens_by_kind() -> None:
    assert OPENAI_CHAT.dialect.tokens(USAGE) == {
        "input": 12,
        "output": 30,
        "cached": 4,
        "reasoning": 20,
    }


def test_responses_tokens_by_kind() -> None:
    usage = {
        "input_tokens": 50,
        "input_tokens_details": {"cached_tokens": 32},
        "output_tokens": 9,
        "output_tokens_details": {"reasoning_tokens": 6},
        "total_tokens": 59,
    }
    assert OPENAI_RESPONSES.dialect.tokens(usage) == {
        "input": 50,
        "output": 9,
        "cached": 32,
        "reasoning": 6,
    }


def test_anthropic_input_counts_the_cached_prompt_tokens_too() -> None:
    usage = {
        "input_tokens": 10,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 5,
        "output_tokens": 7,
    }
    assert ANTHROPIC_MESSAGES.dialect.tokens(usage) == {"input": 115, "output": 7, "cached": 100}
    assert ANTHROPIC_MESSAGES.dialect.tokens({"input_tokens": 3, "output_tokens": 1}) == {
        "input": 3,
        "output": 1,
    }


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -1, "completion_tokens": True},
        {"prompt_tokens_details": None, "completion_tokens_details": [1]},
        {"prompt_tokens_details": {"cached_tokens": "4"}},
        None,
        [1, 2],
    ],
)
def test_what_is_not_a_token_count_is_not_counted(usage: Any) -> None:
    assert OPENAI_CHAT.dialect.tokens(usage) == {}


def test_anthropic_cache_fields_that_are_not_counts_are_not_added() -> None:
    usage = {"input_tokens": 3, "cache_read_input_tokens": None, "cache_creation_input_tokens": -2}
    assert ANTHROPIC_MESSAGES.dialect.tokens(usage) == {"input": 3}
