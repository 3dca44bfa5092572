"""Continuation after the first byte, end to end: a stream that dies mid-answer is continued
by a target that supports assistant prefill, and the client reads one coherent answer.

For each fault: what the client received (byte-exact where the gateway promises it), the
continuation request the target saw (the conversation plus the text so far as the assistant's),
the calls and their timing, and what is counted. Clients: raw HTTP, the `openai` SDK, the
`anthropic` SDK.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from structlog.testing import capture_logs

from tests.conftest import RunningGateway, StartGateway
from tests.observability.scrape import finished, value
from tests.support import anthropic_wire as claude
from tests.support import fake_upstream as fake
from tests.support.chain_gateway import Timed, chain, report, route, target
from tests.support.fake_upstream import DONE, FakeUpstream
from tests.support.openai_wire import chunk_event

MESSAGES: list[Any] = [{"role": "user", "content": "Tell me about the fox."}]
SLACK = 1.0
FIRST = ["The ", "quick ", "brown "]  # what the first stream gets out before it dies
REST = [" fox", " jumps."]  # what a continuation of "The quick brown" says


def first_part(model: str = "primary") -> list[bytes]:
    return fake.openai_chunks(FIRST, finish_reason=None, model=model)


def continuation(model: str = "primary", id: str = "chatcmpl-second") -> list[bytes]:
    """A continuation as an upstream streams it: its own id and created, a role chunk."""
    frames = fake.openai_chunks(["", *REST], model=model, id=id)
    return [f.replace(b'"created":1700000000', b'"created":1700000999') for f in frames]


def spliced(model: str = "primary") -> bytes:
    """The continuation as the client gets it: the first stream's id and created, no second
    role, the space the prefill dropped not sent twice."""
    return b"".join(
        [
            chunk_event({"content": ""}, None, model, "chatcmpl-fake"),
            chunk_event({"content": "fox"}, None, model, "chatcmpl-fake"),
            chunk_event({"content": " jumps."}, None, model, "chatcmpl-fake"),
            chunk_event({}, "stop", model, "chatcmpl-fake"),
            DONE,
        ]
    )


WHOLE = "The quick brown fox jumps."


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


async def post(
    client: aiohttp.ClientSession, gw: RunningGateway, model: str = "m", **fields: Any
) -> tuple[int, bytes]:
    body = {"model": model, "messages": MESSAGES, "stream": True, **fields}
    async with client.post(f"{gw.url}/v1/chat/completions", json=body) as response:
        return response.status, await response.read()


def prefill_of(call: fake.UpstreamCall) -> Any:
    assert call.body["messages"][:-1] == MESSAGES
    last = call.body["messages"][-1]
    assert last["role"] == "assistant"
    return last["content"]


async def gateway_for(
    start_gateway: StartGateway, upstream: FakeUpstream, *targets: dict[str, Any], **fields: Any
) -> RunningGateway:
    return await start_gateway(
        None, heartbeat=None, **chain(upstream, route("m", *targets, **fields))
    )


@pytest.mark.parametrize(
    "death",
    [
        pytest.param(fake.cut_fin(3, chunked=True, chunks=first_part()), id="fin-no-last-chunk"),
        pytest.param(fake.cut_rst(3, chunked=True, chunks=first_part()), id="reset"),
        pytest.param(
            fake.cut_fin(3, chunked=False, chunks=first_part(), half=b'data: {"id":'),
            id="fin-mid-event",
        ),
        pytest.param(fake.sse_stream(first_part(), done=False), id="clean-end-without-finish"),
    ],
)
async def test_a_cut_stream_is_continued_by_the_same_target_and_spliced_byte_exact(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
    death: Any,
    request: pytest.FixtureRequest,
) -> None:
    upstream.script("primary", fake.sequence(death, fake.sse_stream(continuation(), done=False)))
    gw = await gateway_for(start_gateway, upstream, target("primary", prefill=True))
    with Timed() as timed:
        status, body = await post(client, gw)
    calls = upstream.calls_for("primary")
    fault = request.node.callspec.id
    report(f"cut mid-answer ({fault}), prefill target", "one whole answer", timed.elapsed, calls)
    assert status == 200
    assert body == b"".join(first_part()) + spliced()
    assert body.count(b"data: [DONE]") == 1
    assert len(calls) == 2
    assert prefill_of(calls[1]) == "The quick brown"
    assert calls[1].body["continue_final_message"] is True
    assert calls[1].body["add_generation_prompt"] is False
    await finished(gw)
    line = next(e for e in logs if e["event"] == "stream_finished")
    assert (line["outcome"], line["continuations"], line["attempts"]) == ("completed", 1, 2)
    assert value(gw, "gateway_continuations_total", route="m", result="ok") == 1
    assert timed.elapsed < SLACK


async def test_a_stalled_stream_is_continued_after_its_idle_deadline(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(
        "primary",
        fake.sequence(fake.stall_after(3, first_part()), fake.sse_stream(continuation())),
    )
    gw = await gateway_for(
        start_gateway, upstream, target("primary", prefill=True, timeouts={"idle": 0.5})
    )
    with Timed() as timed:
        status, body = await post(client, gw)
    calls = upstream.calls_for("primary")
    report(
        "stalled mid-answer, idle 0.5 s, prefill target", "one whole answer", timed.elapsed, calls
    )
    assert (status, body) == (200, b"".join(first_part()) + spliced())
    await calls[0].wait_closed_by_peer()  # the stalled call was closed, not left hanging
    assert 0.5 <= timed.elapsed < 0.5 + SLACK


async def test_a_target_without_prefill_is_continued_by_the_next_one_that_has_it(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("primary", fake.cut_rst(3, chunked=True, chunks=first_part()))
    upstream.script("plain", fake.sse_stream(continuation("plain")))
    upstream.script("backup", fake.sse_stream(continuation("backup")))
    gw = await gateway_for(
        start_gateway,
        upstream,
        target("primary"),
        target("plain"),  # never asked to continue: it does not declare prefill
        target("backup", prefill=True),
    )
    status, body = await post(client, gw)
    assert (status, body) == (200, b"".join(first_part()) + spliced("backup"))
    assert [call.model for call in upstream.requests] == ["primary", "backup"]
    assert prefill_of(upstream.requests[1]) == "The quick brown"


async def test_without_a_prefill_target_the_cut_is_one_error_event(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("primary", fake.cut_fin(3, chunked=True, chunks=first_part()))
    gw = await gateway_for(start_gateway, upstream, target("primary"), target("backup"))
    status, body = await post(client, gw)
    assert status == 200
    assert body.startswith(b"".join(first_part()))
    assert body.count(b"event: error") == 1
    assert b"upstream_truncated" in body
    assert len(upstream.requests) == 1


async def test_a_target_rejecting_the_prefill_does_not_mask_the_original_error(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
) -> None:
    refusal = fake.openai_error("assistant prefill is not supported", code="invalid_request")
    upstream.script(
        "primary",
        fake.sequence(
            fake.cut_rst(3, chunked=True, chunks=first_part()), fake.status(400, body=refusal)
        ),
    )
    gw = await gateway_for(start_gateway, upstream, target("primary", prefill=True))
    with Timed() as timed:
        status, body = await post(client, gw)
    report(
        "cut, and the continuation refused (400)",
        "the original error event",
        timed.elapsed,
        upstream.requests,
    )
    assert status == 200
    assert body.count(b"event: error") == 1
    event = json.loads(body.rpartition(b"data: ")[2])
    assert event["error"]["code"] in ("connection_reset", "upstream_truncated")  # the cut's
    assert b"prefill" not in body
    await finished(gw)
    assert value(gw, "gateway_continuations_total", route="m", result="rejected") == 1
    line = next(e for e in logs if e["event"] == "stream_finished")
    assert line["code"] == event["error"]["code"]


async def test_continuations_are_bounded_and_each_continues_the_text_so_far(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    second = fake.openai_chunks(["", "fox "], finish_reason=None, id="chatcmpl-2")
    third = fake.openai_chunks(["", "jumps "], finish_reason=None, id="chatcmpl-3")
    upstream.script(
        "primary",
        fake.sequence(
            fake.cut_fin(3, chunked=True, chunks=first_part()),
            fake.cut_fin(2, chunked=True, chunks=second),
            fake.cut_fin(2, chunked=True, chunks=third),
            fake.sse_stream(continuation()),
        ),
    )
    gw = await gateway_for(
        start_gateway, upstream, target("primary", prefill=True), continuations=2
    )
    with Timed() as timed:
        status, body = await post(client, gw)
    calls = upstream.calls_for("primary")
    report(
        "cut, and every continuation cut too (continuations: 2)",
        "text so far, one error",
        timed.elapsed,
        calls,
    )
    assert status == 200
    assert len(calls) == 3  # the stream and two continuations; no third
    assert [prefill_of(call) for call in calls[1:]] == ["The quick brown", "The quick brown fox"]
    text = "".join(
        choice["delta"].get("content") or ""
        for line in body.split(b"\n\n")
        if line.startswith(b"data: {")
        for choice in json.loads(line[6:])["choices"]
    )
    assert text == "The quick brown fox jumps "
    assert body.count(b"event: error") == 1
    await finished(gw)
    assert value(gw, "gateway_continuations_total", route="m", result="ok") == 2
    assert value(gw, "gateway_continuations_total", route="m", result="exhausted") == 1


async def test_a_tool_call_in_progress_is_not_continued(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"q": '},
    }
    frames = [
        chunk_event(
            {"role": "assistant", "content": None, "tool_calls": [call]},
            None,
            "primary",
            "chatcmpl-fake",
        )
    ]
    upstream.script("primary", fake.cut_fin(1, chunked=True, chunks=frames))
    gw = await gateway_for(start_gateway, upstream, target("primary", prefill=True))
    status, body = await post(client, gw)
    assert status == 200
    assert body.count(b"event: error") == 1
    assert len(upstream.requests) == 1
    await finished(gw)
    assert value(gw, "gateway_continuations_total", route="m", result="unsound") == 1


async def test_the_total_deadline_bounds_continuations(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(
        "primary",
        fake.sequence(fake.stall_after(3, first_part()), fake.stall_before_first_event()),
    )
    gw = await gateway_for(
        start_gateway,
        upstream,
        target("primary", prefill=True, timeouts={"idle": 0.5}),
        timeouts={"total": 1.5},
    )
    with Timed() as timed:
        status, body = await post(client, gw)
    report(
        "stall, then a silent continuation; total 1.5 s",
        "deadline_exceeded event",
        timed.elapsed,
        upstream.requests,
    )
    assert status == 200
    assert body.count(b"event: error") == 1
    assert b"deadline_exceeded" in body
    assert 1.5 <= timed.elapsed < 1.5 + SLACK


# --- the SDKs ----------------------------------------------------------------------------------


async def test_openai_sdk_reads_one_answer_with_one_id(
    start_gateway: StartGateway, upstream: FakeUpstream
) -> None:
    upstream.script(
        "primary",
        fake.sequence(
            fake.cut_rst(3, chunked=True, chunks=first_part()), fake.sse_stream(continuation())
        ),
    )
    gw = await gateway_for(start_gateway, upstream, target("primary", prefill=True))
    async with openai.AsyncOpenAI(base_url=gw.base_url, api_key="x", max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == WHOLE
    assert {(c.id, c.created) for c in chunks} == {("chatcmpl-fake", 1700000000)}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


ANTHROPIC_FIRST = [
    claude.message_start(model="claude-x"),
    claude.content_block_start(),
    claude.PING,
    claude.text_delta("The "),
    claude.text_delta("quick "),
    claude.text_delta("brown "),
]
ANTHROPIC_REST = [
    claude.message_start(model="claude-x", id="msg_second"),
    claude.content_block_start(),
    claude.text_delta(" fox"),
    claude.text_delta(" jumps."),
    claude.content_block_stop(),
    claude.message_delta("end_turn"),
    claude.MESSAGE_STOP,
]


@pytest.fixture
async def claude_gateway(start_gateway: StartGateway, upstream: FakeUpstream) -> RunningGateway:
    upstream.script(
        "claude-x",
        fake.sequence(
            fake.cut_fin(len(ANTHROPIC_FIRST), chunked=True, chunks=ANTHROPIC_FIRST),
            fake.sse_stream(ANTHROPIC_REST, done=False),
        ),
    )
    return await start_gateway(
        None,
        heartbeat=None,
        **chain(upstream, route("claude", target("claude-x", "claude", prefill=True))),
    )


@pytest.fixture
async def anthropic_sdk(claude_gateway: RunningGateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=claude_gateway.url, api_key="x", max_retries=0
    ) as client:
        yield client


async def test_anthropic_sdk_reads_one_message_with_the_whole_text(
    upstream: FakeUpstream, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    async with anthropic_sdk.messages.stream(
        model="claude", max_tokens=64, messages=MESSAGES
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        message = await stream.get_final_message()
    assert text == WHOLE
    assert message.id == "msg_fake"  # the first stream's message, continued
    assert message.stop_reason == "end_turn"
    calls = upstream.calls_for("claude-x")
    assert [call.path for call in calls] == ["/v1/messages"] * 2
    assert prefill_of(calls[1]) == "The quick brown"
    assert "continue_final_message" not in calls[1].body


async def test_anthropic_continuation_is_spliced_byte_exact(
    upstream: FakeUpstream, claude_gateway: RunningGateway, client: aiohttp.ClientSession
) -> None:
    body = {"model": "claude", "max_tokens": 64, "messages": MESSAGES, "stream": True}
    async with client.post(f"{claude_gateway.url}/v1/messages", json=body) as response:
        received = await response.read()
    fox = claude.event(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "fox"}}
    )
    assert received == b"".join([*ANTHROPIC_FIRST, fox, *ANTHROPIC_REST[3:]])
