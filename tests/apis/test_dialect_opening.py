"""Each dialect's `opening`: which events of an answer that has not begun are its preamble (a
role, an id, a ping, an empty delta), which begin it (text, a tool call, reasoning, its end),
and which are the upstream's own error - judged on the exact event shapes of the providers
(the fake upstream's wire builders), and on every event of a whole recorded stream.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.apis import ANTHROPIC_MESSAGES, OPENAI_CHAT, OPENAI_COMPLETIONS, OPENAI_RESPONSES
from gateway.streaming import Dialect, Opening, SSEDecoder, SSEEvent
from tests.support import anthropic_wire as claude
from tests.support import responses_wire as wire
from tests.support.openai_wire import DONE, chunk_event, openai_chunks, openai_error

CHAT = OPENAI_CHAT.dialect
MESSAGES = ANTHROPIC_MESSAGES.dialect
RESPONSES = OPENAI_RESPONSES.dialect
PREAMBLE, CONTENT, ERROR = Opening.PREAMBLE, Opening.CONTENT, Opening.ERROR


def event(frame: bytes) -> SSEEvent:
    (decoded,) = SSEDecoder().feed(frame)
    return decoded


def data(payload: dict[str, Any], name: str | None = None) -> bytes:
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + json.dumps(payload).encode() + b"\n\n"


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    return chunk_event(delta, finish_reason, "m", "chatcmpl-1")


def tool_call() -> dict[str, Any]:
    call = {"index": 0, "id": "call_1", "type": "function"}
    return {"tool_calls": [{**call, "function": {"name": "f", "arguments": ""}}]}


CHAT_CASES = [
    pytest.param(chunk({"role": "assistant"}), PREAMBLE, id="role-only"),
    pytest.param(chunk({"role": "assistant", "content": ""}), PREAMBLE, id="role-empty-content"),
    pytest.param(chunk({"content": None, "refusal": None}), PREAMBLE, id="null-delta"),
    pytest.param(chunk({}), PREAMBLE, id="empty-delta"),
    pytest.param(
        data({"id": "x", "choices": [], "prompt_filter_results": []}),
        PREAMBLE,
        id="azure-prompt-filter",
    ),
    pytest.param(b"data: {not json\n\n", PREAMBLE, id="malformed"),
    pytest.param(chunk({"role": "assistant", "content": "Hi"}), CONTENT, id="text"),
    pytest.param(chunk(tool_call()), CONTENT, id="tool-call"),
    pytest.param(chunk({"reasoning_content": "hmm"}), CONTENT, id="reasoning"),
    pytest.param(chunk({"refusal": "no"}), CONTENT, id="refusal"),
    pytest.param(chunk({}, "stop"), CONTENT, id="finish-reason"),
    pytest.param(DONE, CONTENT, id="done"),
    pytest.param(
        b"data: " + json.dumps(openai_error("boom")).encode() + b"\n\n", ERROR, id="error-chunk"
    ),
]


@pytest.mark.parametrize(("frame", "said"), CHAT_CASES)
def test_chat_chunks_are_preamble_until_a_choice_carries_something(
    frame: bytes, said: Opening
) -> None:
    assert CHAT.opening(event(frame)) is said


@pytest.mark.parametrize(
    ("text", "finish_reason", "said"),
    [("", None, PREAMBLE), ("Hel", None, CONTENT), ("", "length", CONTENT)],
)
def test_legacy_completion_chunks_begin_with_text_or_a_finish_reason(
    text: str, finish_reason: str | None, said: Opening
) -> None:
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
    frame = data({"id": "cmpl-1", "object": "text_completion", "choices": [choice]})
    assert OPENAI_COMPLETIONS.dialect.opening(event(frame)) is said


def block_start(block: dict[str, Any]) -> bytes:
    return claude.event({"type": "content_block_start", "index": 0, "content_block": block})


def block_delta(delta: dict[str, Any]) -> bytes:
    return claude.event({"type": "content_block_delta", "index": 0, "delta": delta})


MESSAGES_CASES = [
    pytest.param(claude.message_start(), PREAMBLE, id="message-start"),
    pytest.param(claude.PING, PREAMBLE, id="ping"),
    pytest.param(claude.content_block_start(), PREAMBLE, id="empty-text-block"),
    pytest.param(block_start({"type": "thinking", "thinking": ""}), PREAMBLE, id="empty-thinking"),
    pytest.param(block_delta({"type": "text_delta", "text": ""}), PREAMBLE, id="empty-delta"),
    pytest.param(claude.content_block_stop(), PREAMBLE, id="empty-block-stop"),
    pytest.param(claude.text_delta("Hi"), CONTENT, id="text"),
    pytest.param(
        block_start({"type": "tool_use", "id": "t", "name": "f", "input": {}}),
        CONTENT,
        id="tool-use",
    ),
    pytest.param(
        block_delta({"type": "thinking_delta", "thinking": "hmm"}), CONTENT, id="thinking"
    ),
    pytest.param(
        block_start({"type": "redacted_thinking", "data": "xyz"}), CONTENT, id="redacted-thinking"
    ),
    pytest.param(claude.message_delta("end_turn"), CONTENT, id="message-delta"),
    pytest.param(claude.MESSAGE_STOP, CONTENT, id="message-stop"),
    pytest.param(claude.error_event(), ERROR, id="error"),
    pytest.param(b"event: error\ndata: not json\n\n", ERROR, id="error-not-json"),
    pytest.param(data({"type": "ping"}), PREAMBLE, id="unnamed-ping"),
]


@pytest.mark.parametrize(("frame", "said"), MESSAGES_CASES)
def test_messages_events_are_preamble_until_a_block_carries_something(
    frame: bytes, said: Opening
) -> None:
    assert MESSAGES.opening(event(frame)) is said


def output_item(item: dict[str, Any]) -> bytes:
    return wire.responses_event("response.output_item.added", 2, output_index=0, item=item)


RESPONSES_CASES = [
    pytest.param(wire.responses_event("response.queued", 0), PREAMBLE, id="queued"),
    pytest.param(
        output_item({"type": "reasoning", "id": "rs", "summary": []}),
        PREAMBLE,
        id="empty-reasoning-item",
    ),
    pytest.param(
        wire.responses_event("response.output_text.delta", 4, delta=""), PREAMBLE, id="empty-delta"
    ),
    pytest.param(
        wire.responses_event(
            "response.reasoning_summary_part.added", 3, part={"type": "summary_text", "text": ""}
        ),
        PREAMBLE,
        id="empty-summary-part",
    ),
    pytest.param(
        output_item({"type": "function_call", "call_id": "c", "name": "f", "arguments": ""}),
        CONTENT,
        id="function-call-item",
    ),
    pytest.param(
        wire.responses_event("response.reasoning_summary_text.delta", 4, delta="so"),
        CONTENT,
        id="reasoning-summary",
    ),
    pytest.param(wire.failed_event(3), ERROR, id="failed"),
    pytest.param(wire.responses_error_event(3), ERROR, id="error"),
]


@pytest.mark.parametrize(("frame", "said"), RESPONSES_CASES)
def test_responses_events_are_preamble_until_one_carries_something(
    frame: bytes, said: Opening
) -> None:
    assert RESPONSES.opening(event(frame)) is said


@pytest.mark.parametrize(
    ("dialect", "frames", "preamble"),
    [
        pytest.param(CHAT, [*openai_chunks(["", "Hel", "lo"]), DONE], 1, id="chat"),
        pytest.param(MESSAGES, claude.anthropic_events(["Hel", "lo"]), 3, id="messages"),
        pytest.param(RESPONSES, wire.responses_events(["Hel", "lo"]), 4, id="responses"),
        pytest.param(
            RESPONSES, wire.responses_events(["Hel"], named=False), 4, id="responses-unnamed"
        ),
    ],
)
def test_a_whole_stream_begins_at_its_first_text(
    dialect: Dialect, frames: list[bytes], preamble: int
) -> None:
    said = [dialect.opening(event(frame)) for frame in frames]
    assert said[:preamble] == [PREAMBLE] * preamble
    assert said[preamble] is CONTENT


def test_the_default_dialect_takes_every_event_for_content() -> None:
    assert Dialect().opening(event(chunk({"role": "assistant"}))) is CONTENT
