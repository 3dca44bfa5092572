"""`Splice`: what the client has read, whether it can be continued, the continuation request,
and the continuation's events as the client's stream needs them - per dialect."""

from __future__ import annotations

import json
from typing import Any

from gateway.apis.anthropic_messages import AnthropicSplice
from gateway.apis.openai_chat import OpenAISplice
from gateway.streaming import SSEDecoder, SSEEvent
from tests.support import anthropic_wire as claude
from tests.support.openai_wire import DONE, chunk_event, openai_chunks

REQUEST: dict[str, Any] = {
    "model": "m",
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}


def events(*frames: bytes) -> list[SSEEvent]:
    return SSEDecoder().feed(b"".join(frames))


def raw(out: list[SSEEvent]) -> bytes:
    return b"".join(event.raw for event in out)


# --- OpenAI ------------------------------------------------------------------------------------


def test_openai_text_is_collected_and_events_pass_untouched() -> None:
    splice = OpenAISplice(REQUEST)
    frames = openai_chunks(["The ", "quick "], finish_reason=None)
    seen = events(*frames)
    assert splice.observe(seen) is seen
    assert (splice.text, splice.sound, splice.complete) == ("The quick ", True, False)
    splice.observe(events(chunk_event({}, "stop", "fake-model", "chatcmpl-fake")))
    assert splice.complete


def test_openai_continuation_request_prefills_the_text_without_trailing_space() -> None:
    splice = OpenAISplice(REQUEST)
    splice.observe(events(*openai_chunks(["The ", "quick "], finish_reason=None)))
    body = splice.body(REQUEST)
    assert body["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "The quick"},
    ]
    assert body["continue_final_message"] is True
    assert body["add_generation_prompt"] is False
    assert REQUEST["messages"] == [{"role": "user", "content": "hi"}]  # not changed


def test_openai_clients_own_prefill_is_extended() -> None:
    request = {
        **REQUEST,
        "messages": [*REQUEST["messages"], {"role": "assistant", "content": "Sure: "}],
    }
    splice = OpenAISplice(request)
    splice.observe(events(*openai_chunks(["one, ", "two"], finish_reason=None)))
    assert splice.body(request)["messages"][-1] == {
        "role": "assistant",
        "content": "Sure: one, two",
    }


def test_openai_continuation_gets_the_first_streams_identity_without_repeats() -> None:
    splice = OpenAISplice(REQUEST)
    splice.observe(events(*openai_chunks(["The ", "quick "], finish_reason=None)))
    splice.body(REQUEST)  # the prefill "The quick" drops the trailing space
    second = openai_chunks([" brown", " fox."], id="chatcmpl-2", model="other")
    second = [frame.replace(b'"created":1700000000', b'"created":1700000999') for frame in second]
    out = splice.rewrite(events(*second, DONE))
    assert raw(out) == b"".join(
        [
            chunk_event(
                {"content": "brown"}, None, "other", "chatcmpl-fake"
            ),  # role gone, " " once
            chunk_event({"content": " fox."}, None, "other", "chatcmpl-fake"),
            chunk_event({}, "stop", "other", "chatcmpl-fake"),
            DONE,
        ]
    )
    assert splice.text == "The quick brown fox."
    assert splice.complete


def test_openai_tool_calls_reasoning_and_several_choices_cannot_be_continued() -> None:
    tool = {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": ""}}]}
    for delta in (tool, {"reasoning_content": "hmm"}, {"refusal": "no"}):
        splice = OpenAISplice(REQUEST)
        splice.observe(events(chunk_event(delta, None, "m", "x")))
        assert not splice.sound, delta
    splice = OpenAISplice(REQUEST)
    second = json.loads(chunk_event({"content": "b"}, None, "m", "x")[6:])
    second["choices"][0]["index"] = 1
    splice.observe(events(b"data: " + json.dumps(second).encode() + b"\n\n"))
    assert not splice.sound
    assert not OpenAISplice({**REQUEST, "n": 2}).sound


# --- Anthropic ---------------------------------------------------------------------------------


def test_anthropic_text_block_is_collected_and_a_closed_block_cannot_be_continued() -> None:
    splice = AnthropicSplice(REQUEST)
    opening = [claude.message_start(), claude.content_block_start(), claude.PING]
    splice.observe(events(*opening, claude.text_delta("The "), claude.text_delta("quick ")))
    assert (splice.text, splice.sound) == ("The quick ", True)
    splice.observe(events(claude.content_block_stop()))
    assert not splice.sound


def test_anthropic_continuation_request_has_no_trailing_whitespace_and_no_openai_fields() -> None:
    splice = AnthropicSplice(REQUEST)
    splice.observe(
        events(claude.message_start(), claude.content_block_start(), claude.text_delta("Hi \n"))
    )
    body = splice.body(REQUEST)
    assert body["messages"][-1] == {"role": "assistant", "content": "Hi"}
    assert "continue_final_message" not in body


def test_anthropic_continuation_drops_its_block_start_and_repeated_whitespace_not_its_usage() -> (
    None
):
    splice = AnthropicSplice(REQUEST)
    splice.observe(
        events(claude.message_start(), claude.content_block_start(), claude.text_delta("Hi \n"))
    )
    splice.body(REQUEST)
    second = [
        claude.message_start(id="msg_2"),
        claude.content_block_start(),
        claude.PING,
        claude.text_delta(" "),  # part of the " \n" already sent
        claude.text_delta("\nthere"),
        claude.content_block_stop(),
        claude.message_delta("end_turn"),
        claude.MESSAGE_STOP,
    ]
    out = splice.rewrite(events(*second))
    assert raw(out) == b"".join(
        [
            claude.message_start(id="msg_2"),  # for the tracker: its usage, then dropped
            claude.PING,
            claude.event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "there"},
                }
            ),
            claude.content_block_stop(),
            claude.message_delta("end_turn"),
            claude.MESSAGE_STOP,
        ]
    )
    assert splice.text == "Hi \nthere"
    assert splice.complete
    assert not splice.diverged


def test_anthropic_continuation_starting_another_kind_of_block_diverges() -> None:
    splice = AnthropicSplice(REQUEST)
    splice.observe(
        events(claude.message_start(), claude.content_block_start(), claude.text_delta("Hi"))
    )
    tool = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
    }
    splice.rewrite(events(claude.message_start(id="msg_2"), claude.event(tool)))
    assert splice.diverged


def test_anthropic_extended_thinking_cannot_be_continued() -> None:
    assert not AnthropicSplice(
        {**REQUEST, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    ).sound
    assert AnthropicSplice({**REQUEST, "thinking": {"type": "disabled"}}).sound
