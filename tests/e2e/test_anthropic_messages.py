"""`POST /v1/messages` end to end: fake Anthropic upstream -> gateway -> raw HTTP client.

For each way an Anthropic-compatible upstream can behave, what the client receives, byte for
byte: the stream as the upstream framed it (`ping`s included) up to `message_stop`; exactly one
Anthropic `event: error` when the stream was cut; the upstream's own `event: error` relayed as the
terminal event with nothing added; Anthropic error bodies with real statuses before commit; and,
where the gateway gave up on the upstream, the upstream's connection closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
import pytest

from tests.conftest import RunningGateway, StartGateway
from tests.support import anthropic_wire as claude
from tests.support import fake_upstream as fake
from tests.support.anthropic_gateway import CLAUDE, anthropic_routes, messages_body
from tests.support.fake_upstream import FakeUpstream

EVENTS = claude.anthropic_events(["Hel", "lo", "!"])
ERROR_TYPES_OF_CUTS = "api_error"  # stream_interrupted and network errors, in Anthropic's terms


async def start(
    start_gateway: StartGateway, upstream: FakeUpstream, **overrides: Any
) -> RunningGateway:
    return await start_gateway(None, **anthropic_routes(upstream), **overrides)


async def post(
    client: aiohttp.ClientSession,
    gw: RunningGateway,
    *,
    stream: bool = True,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    async with client.post(
        f"{gw.url}/v1/messages", json=messages_body(stream=stream), headers=headers or {}
    ) as response:
        return response.status, dict(response.headers), await response.read()


def split_error_event(body: bytes) -> tuple[bytes, dict[str, Any]]:
    """(everything before the one error event, its JSON); fails unless exactly one Anthropic
    error event, one line of JSON, ends the body."""
    assert body.count(b"event: error\n") == 1, body
    before, _, frame = body.partition(b"event: error\n")
    assert frame.startswith(b"data: "), frame
    assert frame.endswith(b"\n\n"), frame
    line = frame[len(b"data: ") : -2]
    assert b"\n" not in line
    assert b"\r" not in line
    payload = json.loads(line)
    assert payload["type"] == "error"
    assert set(payload["error"]) == {"type", "message"}
    return before, payload


def error_body(body: bytes) -> dict[str, str]:
    """The `error` object of an Anthropic error body (and nothing else in it)."""
    payload = json.loads(body)
    assert payload["type"] == "error"
    assert set(payload["error"]) == {"type", "message"}
    error: dict[str, str] = payload["error"]
    return error


# --- complete streams --------------------------------------------------------------------------


async def test_complete_stream_with_pings_is_relayed_byte_exact(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    pinged = [*EVENTS[:4], claude.PING, *EVENTS[4:]]
    upstream.script(CLAUDE, fake.sse_stream(pinged, done=False))
    gw = await start(start_gateway, upstream)

    status, headers, body = await post(client, gw)

    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Accel-Buffering"] == "no"
    assert body == b"".join(pinged)
    assert body.count(b"event: ping\n") == 2


async def test_message_stop_ends_the_response_and_nothing_after_it_is_relayed(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    after = [claude.text_delta(" more"), claude.MESSAGE_STOP]
    upstream.script(CLAUDE, fake.stall_after(len(EVENTS) + 2, [*EVENTS, *after]))
    gw = await start(start_gateway, upstream)

    status, _, body = await post(client, gw)

    assert (status, body) == (200, b"".join(EVENTS))
    await (await upstream.next_call()).wait_closed_by_peer()


async def test_stream_that_said_stop_reason_but_forgot_message_stop_is_completed(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    events = claude.anthropic_events(["Hel", "lo"], stop=False)
    upstream.script(CLAUDE, fake.sse_stream(events, done=False))
    gw = await start(start_gateway, upstream)

    status, _, body = await post(client, gw)

    assert (status, body) == (200, b"".join(events) + claude.MESSAGE_STOP)


# --- cut streams: one Anthropic error event ----------------------------------------------------


@pytest.mark.parametrize(
    "behaviour",
    [
        fake.sse_stream(claude.anthropic_events(["a"], stop_reason=None, stop=False), done=False),
        fake.cut_fin(4, chunked=True, chunks=EVENTS),
        fake.cut_fin(4, chunked=False, chunks=EVENTS),
        fake.cut_rst(4, chunked=True, chunks=EVENTS),
        fake.cut_fin(4, chunked=True, chunks=EVENTS, half=b"event: content_block_delta\ndata: {"),
    ],
    ids=["clean-end-without-stop", "fin-chunked", "fin-close-delimited", "rst", "mid-event"],
)
async def test_cut_stream_ends_with_exactly_one_anthropic_error_event(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    behaviour: fake.Behaviour,
) -> None:
    upstream.script(CLAUDE, behaviour)
    gw = await start(start_gateway, upstream)

    status, _, body = await post(client, gw)

    assert status == 200
    before, payload = split_error_event(body)
    assert before.startswith(claude.message_start())
    assert b"message_stop" not in before
    assert b"event: content_block_delta\ndata: {\n" not in before  # half an event never leaks
    assert payload["error"]["type"] == ERROR_TYPES_OF_CUTS
    assert payload["error"]["message"]


async def test_upstream_error_event_is_relayed_as_the_terminal_event_with_nothing_added(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    sent = [*EVENTS[:4], claude.error_event("overloaded_error", "Overloaded")]
    # The upstream goes on after its error event: nothing of that reaches the client.
    upstream.script(CLAUDE, fake.stall_after(len(sent) + 1, [*sent, claude.text_delta("late")]))
    gw = await start(start_gateway, upstream)

    status, _, body = await post(client, gw)

    assert (status, body) == (200, b"".join(sent))
    _, payload = split_error_event(body)
    assert payload["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    await (await upstream.next_call()).wait_closed_by_peer()


async def test_idle_timeout_mid_stream_is_a_timeout_error_event(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(CLAUDE, fake.stall_after(4, EVENTS))
    gw = await start(start_gateway, upstream, heartbeat=None)

    status, _, body = await post(client, gw, headers={"x-gateway-idle-timeout": "0.2"})

    assert status == 200
    before, payload = split_error_event(body)
    assert before == b"".join(EVENTS[:4])
    assert payload["error"]["type"] == "timeout_error"
    assert "idle" in payload["error"]["message"]
    await (await upstream.next_call()).wait_closed_by_peer()


async def test_heartbeats_are_comments_and_a_later_first_byte_timeout_is_an_error_event(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(CLAUDE, fake.stall_before_first_event())
    gw = await start(start_gateway, upstream, heartbeat=0.05)

    status, _, body = await post(client, gw, headers={"x-gateway-first-byte-timeout": "0.5"})

    assert status == 200
    pings, payload = split_error_event(body)
    assert pings
    assert set(pings.split(b"\n\n")) == {b": ping", b""}
    assert payload["error"]["type"] == "timeout_error"


# --- errors before commit: real statuses, Anthropic bodies ----------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "status", "type", "message"),
    [
        (
            fake.status(
                429,
                body=claude.anthropic_error("rate_limit_error", "Number of requests exceeded"),
                headers={"retry-after": "7"},
            ),
            429,
            "rate_limit_error",
            "the upstream is rate limiting requests",
        ),
        (
            fake.status(529, body=claude.anthropic_error("overloaded_error", "Overloaded")),
            502,
            "api_error",
            "the upstream is overloaded",
        ),
        (
            fake.status(500, body=claude.anthropic_error("api_error", "Internal server error")),
            502,
            "api_error",
            "the upstream failed with a server error",
        ),
        (
            fake.status(401, body=claude.anthropic_error("authentication_error", "invalid key")),
            502,
            "api_error",
            "the upstream rejected the gateway's credentials",
        ),
        (
            fake.status(
                400,
                body=claude.anthropic_error(
                    "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"
                ),
            ),
            400,
            "invalid_request_error",
            "prompt is too long: 210000 tokens > 200000 maximum",
        ),
        (
            fake.status(413, body=claude.anthropic_error("request_too_large", "too large")),
            413,
            "request_too_large",
            "the upstream rejected the request as too large",
        ),
    ],
    ids=["429", "529", "500", "401", "400", "413"],
)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_upstream_error_status_is_the_gateways_status_with_an_anthropic_body(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    behaviour: fake.Behaviour,
    status: int,
    type: str,
    message: str,
    stream: bool,
) -> None:
    upstream.script(CLAUDE, behaviour)
    gw = await start(start_gateway, upstream)

    got_status, headers, body = await post(client, gw, stream=stream)

    assert got_status == status
    assert headers["Content-Type"].startswith("application/json")
    assert error_body(body) == {"type": type, "message": message}
    assert headers.get("Retry-After") == ("7" if status == 429 else None)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_first_byte_timeout_is_a_504_timeout_error(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    stream: bool,
) -> None:
    upstream.script(CLAUDE, fake.stall_before_headers())
    gw = await start(start_gateway, upstream, heartbeat=None)

    status, _, body = await post(
        client, gw, stream=stream, headers={"x-gateway-first-byte-timeout": "0.2"}
    )

    assert status == 504
    error = error_body(body)
    assert error["type"] == "timeout_error"
    assert "first_byte" in error["message"]
    await (await upstream.next_call()).wait_closed_by_peer()


# --- non-streaming -----------------------------------------------------------------------------


async def test_json_answer_is_relayed_byte_exact(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    answer = claude.anthropic_message("Hello there!")
    upstream.script(CLAUDE, fake.status(200, body=answer))
    gw = await start(start_gateway, upstream)

    status, headers, body = await post(client, gw, stream=False)

    assert (status, body) == (200, answer)
    assert headers["Content-Type"].startswith("application/json")
    call = await upstream.next_call()
    assert call.body["stream"] is False
    assert call.headers["Accept"] == "application/json"


# --- client disconnect -------------------------------------------------------------------------


async def test_client_leaving_mid_stream_closes_the_upstream_connection(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(CLAUDE, fake.stall_after(4, EVENTS))  # mid-stream: after the first text
    gw = await start(start_gateway, upstream, heartbeat=None)

    async with client.post(f"{gw.url}/v1/messages", json=messages_body()) as response:
        assert await response.content.readuntil(b"\n\n") == EVENTS[0]
        response.close()

    await (await upstream.next_call()).wait_closed_by_peer()


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_client_leaving_before_the_upstream_answers_closes_the_upstream_connection(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    stream: bool,
) -> None:
    upstream.script(CLAUDE, fake.stall_before_headers())
    gw = await start(start_gateway, upstream, heartbeat=None)
    request = asyncio.ensure_future(
        client.post(f"{gw.url}/v1/messages", json=messages_body(stream=stream))
    )
    call = await upstream.next_call()
    await call.started.wait()

    request.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await request

    await call.wait_closed_by_peer()
