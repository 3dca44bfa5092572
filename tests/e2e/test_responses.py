"""`POST /v1/responses` with the official `openai` SDK, in front of the fake upstream (an
`openai`-kind target, relayed to its `/responses`); the built-in mock's cases are in
`test_responses_mock.py`.

What an SDK user sees is the contract: `responses.create` (plain and `stream=True`) and
`responses.stream()` + `get_final_response()` give the upstream's whole answer; a stream the
upstream cut (FIN, RST), stalled past a deadline or filled with an oversized event raises
`openai.APIError` (never a status error: the 200 was sent) and never yields
`response.completed`; the upstream's own `response.failed` / `error` is relayed and ends the
stream; a failure before the first byte is the status-specific SDK exception; failover before
the first byte is invisible; a client that leaves mid-stream closes the upstream; tokens of the
terminal event's usage are counted.

Clients never retry (`max_retries=0`): every request here is exactly one upstream call per target.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import openai
import pytest
from structlog.testing import capture_logs

from tests.conftest import UPSTREAM_KEY, RunningGateway, StartGateway
from tests.e2e.test_client_disconnect import assert_recorded_once
from tests.observability.scrape import finished, value
from tests.support import fake_upstream as fake
from tests.support import responses_wire as wire
from tests.support.chain_gateway import chain, route, target
from tests.support.fake_upstream import FakeUpstream

MODEL = "fake-model"
CLIENT_KEY = "client-key"
INPUT = "hi there"
WORDS = ["The ", "quick ", "brown ", "fox ", "jumps."]
EVENTS = wire.responses_events(WORDS)
#: Events before the first text delta: created, in_progress, output_item.added, part.added.
PREAMBLE = 4
#: The fast built-in mock (no pacing between words).
FAST_MOCK = {"mock": {"kind": "mock", "mock": {"chunk_delay": 0}}}
#: What an upstream's RST mid-body becomes (aiohttp reports it either way, by timing; the chat
#: tests accept both too).
RESET = "reset"
CODES = {RESET: {"connection_reset", "upstream_truncated"}}
MOCK_ANSWER = (
    "Hello! This is the sse-gateway mock provider, streaming one word at a time. You said: hi there"
)


@pytest.fixture
async def gateway(upstream: FakeUpstream, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(upstream, models=(MODEL,))


@pytest.fixture
async def sdk(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=CLIENT_KEY, max_retries=0
    ) as client:
        yield client


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


async def drain(stream: openai.AsyncStream[Any], into: list[Any]) -> None:
    """Append the stream's events to `into` until it ends or raises; always close it."""
    async with stream:
        async for event in stream:
            into.append(event)


def text_of(events: list[Any]) -> str:
    return "".join(event.delta for event in events if event.type == "response.output_text.delta")


def kinds(events: list[Any]) -> list[str]:
    return [event.type for event in events]


async def stream_events(
    sdk: openai.AsyncOpenAI, model: str = MODEL, headers: dict[str, str] | None = None
) -> list[Any]:
    stream = await sdk.responses.create(
        model=model, input=INPUT, stream=True, extra_headers=headers or {}
    )
    events: list[Any] = []
    await drain(stream, events)
    return events


async def assert_cut_raises_api_error(
    sdk: openai.AsyncOpenAI, model: str, code: str, headers: dict[str, str] | None = None
) -> tuple[openai.APIError, list[Any]]:
    """`responses.create(stream=True)` raises `APIError` (not a status error) with `code`,
    after relaying what came before, and never yields `response.completed`; so does
    `responses.stream()`, whose `get_final_response()` is never reached. `code` may be
    `RESET`: an RST reaches the gateway as a reset or as a truncated body, by timing."""
    stream = await sdk.responses.create(
        model=model, input=INPUT, stream=True, extra_headers=headers or {}
    )
    received: list[Any] = []
    with pytest.raises(openai.APIError) as raised:
        await drain(stream, received)
    error = raised.value
    assert not isinstance(error, openai.APIStatusError)  # the status was a 200
    assert error.code in CODES.get(code, {code})
    assert isinstance(error.body, dict)
    assert error.body["code"] == error.code
    assert error.message  # for humans; never empty
    assert "response.completed" not in kinds(received)
    assert "response.incomplete" not in kinds(received)

    helper_events: list[str] = []
    with pytest.raises(openai.APIError) as again:
        await final_response_of(sdk, model, headers or {}, helper_events)
    assert again.value.code in CODES.get(code, {code})
    assert "response.completed" not in helper_events
    return error, received


async def final_response_of(
    sdk: openai.AsyncOpenAI, model: str, headers: dict[str, str], types: list[str]
) -> Any:
    """`responses.stream()` read to its end (the types of its events into `types`), then
    `get_final_response()`."""
    async with sdk.responses.stream(model=model, input=INPUT, extra_headers=headers) as stream:
        async for event in stream:
            types.append(event.type)
        return await stream.get_final_response()


# --- answers that succeed (fake upstream) ------------------------------------------------------


async def test_create_returns_the_upstreams_response_object(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.script(MODEL, fake.status(200, body=wire.responses_completion("Hi from the fake")))

    response = await sdk.responses.create(model=MODEL, input=INPUT)

    assert (response.id, response.status) == (wire.RESPONSE_ID, "completed")
    assert response.output_text == "Hi from the fake"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (9, 4)
    call = await upstream.next_call()
    assert (call.method, call.path) == ("POST", "/v1/responses")
    assert call.body == {"model": MODEL, "input": INPUT}
    assert call.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert all(CLIENT_KEY not in value for value in call.headers.values())


async def test_create_stream_yields_every_event_and_ends_with_response_completed(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.script(MODEL, fake.sse_stream(EVENTS, done=False))

    events = await stream_events(sdk)

    assert text_of(events) == "".join(WORDS)
    assert len(events) == len(EVENTS)
    assert kinds(events)[0] == "response.created"
    assert kinds(events)[-1] == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(EVENTS)))
    assert events[-1].response.usage.output_tokens == len(WORDS)
    call = await upstream.next_call()
    assert call.path == "/v1/responses"
    assert call.body["stream"] is True
    assert call.headers["Accept"] == "text/event-stream"


async def test_stream_helper_gives_the_final_response(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.script(MODEL, fake.sse_stream(EVENTS, done=False))

    async with sdk.responses.stream(model=MODEL, input=INPUT) as stream:
        deltas = [
            event.delta async for event in stream if event.type == "response.output_text.delta"
        ]
        final = await stream.get_final_response()

    assert "".join(deltas) == "".join(WORDS)
    assert (final.id, final.status) == (wire.RESPONSE_ID, "completed")
    assert final.output_text == "".join(WORDS)
    assert final.usage is not None
    assert final.usage.output_tokens == len(WORDS)


async def test_sync_client_streams_the_whole_answer(
    upstream: FakeUpstream, gateway: RunningGateway
) -> None:
    upstream.script(MODEL, fake.sse_stream(EVENTS, done=False))

    def run() -> tuple[str, str]:
        with (
            openai.OpenAI(base_url=gateway.base_url, api_key=CLIENT_KEY, max_retries=0) as c,
            c.responses.stream(model=MODEL, input=INPUT) as stream,
        ):
            final = stream.get_final_response()
        return final.output_text, final.status or ""

    assert await asyncio.to_thread(run) == ("".join(WORDS), "completed")


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "close-delimited"])
async def test_the_stream_is_relayed_byte_exact(
    upstream: FakeUpstream,
    gateway: RunningGateway,
    client: aiohttp.ClientSession,
    chunked: bool,
) -> None:
    crlf = EVENTS[5].replace(b"\n", b"\r\n")  # an upstream framing its events with CRLF
    sent = [*EVENTS[:5], crlf, *EVENTS[6:]]
    upstream.script(MODEL, fake.sse_stream(sent, done=False, chunked=chunked))
    body = {"model": MODEL, "input": INPUT, "stream": True}

    async with client.post(f"{gateway.base_url}/responses", json=body) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Cache-Control"] == "no-cache"
        relayed = await response.read()

    assert relayed == b"".join(sent)


async def test_an_incomplete_response_ends_the_stream_cleanly(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.script(
        MODEL,
        fake.sse_stream(wire.responses_events(WORDS, terminal="response.incomplete"), done=False),
    )

    async with sdk.responses.stream(model=MODEL, input=INPUT) as stream:
        events = [event.type async for event in stream]

    assert events[-1] == "response.incomplete"
    assert "error" not in events


async def test_nothing_after_the_terminal_event_is_relayed(
    upstream: FakeUpstream, gateway: RunningGateway, client: aiohttp.ClientSession
) -> None:
    extra = wire.responses_event("response.output_text.delta", 99, delta="late")
    upstream.script(MODEL, fake.stall_after(len(EVENTS) + 2, [*EVENTS, extra, fake.DONE]))

    async with client.post(
        f"{gateway.base_url}/responses", json={"model": MODEL, "input": INPUT, "stream": True}
    ) as response:
        relayed = await response.read()

    assert relayed == b"".join(EVENTS)  # ended promptly at response.completed
    await upstream.requests[0].wait_closed_by_peer()


async def test_a_garbage_event_is_skipped_and_the_stream_completes(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    garbage = b"event: response.output_text.delta\ndata: {this is not json\n\n"
    upstream.script(MODEL, fake.sse_stream([*EVENTS[:6], garbage, *EVENTS[6:]], done=False))

    events = await stream_events(sdk)

    assert text_of(events) == "".join(WORDS)
    assert kinds(events)[-1] == "response.completed"
    assert len(events) == len(EVENTS)


# --- the upstream's own failure, relayed -------------------------------------------------------


async def test_an_upstream_response_failed_is_relayed_and_ends_the_stream(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    failed = wire.failed_event(PREAMBLE + 2, "The model had a server error.")
    late = wire.responses_event("response.output_text.delta", 99, delta="late")
    upstream.script(MODEL, fake.stall_after(PREAMBLE + 4, [*EVENTS[: PREAMBLE + 2], failed, late]))

    events = await stream_events(sdk)

    assert kinds(events)[-1] == "response.failed"
    assert events[-1].response.error.message == "The model had a server error."
    assert text_of(events) == "".join(WORDS[:2])
    assert "response.completed" not in kinds(events)
    with pytest.raises(RuntimeError, match=r"response\.completed"):
        async with sdk.responses.stream(model=MODEL, input=INPUT) as stream:
            await stream.get_final_response()
    await finished(gateway, 2)
    outcomes = {"endpoint": "responses", "route": MODEL}
    assert value(gateway, "gateway_requests_total", **outcomes, outcome="api_error") == 2
    assert value(gateway, "gateway_requests_total", **outcomes, outcome="completed") == 0


async def test_an_upstream_error_event_is_relayed_and_ends_the_stream(
    upstream: FakeUpstream, gateway: RunningGateway, client: aiohttp.ClientSession
) -> None:
    own_error = wire.responses_error_event(PREAMBLE + 1, "Upstream overloaded")
    late = wire.responses_event("response.output_text.delta", 99, delta="late")
    upstream.script(
        MODEL, fake.stall_after(PREAMBLE + 3, [*EVENTS[: PREAMBLE + 1], own_error, late])
    )

    async with client.post(
        f"{gateway.base_url}/responses", json={"model": MODEL, "input": INPUT, "stream": True}
    ) as response:
        relayed = await response.read()

    assert relayed == b"".join(EVENTS[: PREAMBLE + 1]) + own_error  # one error: the upstream's
    # OpenAI's own error event has no nested `error`: openai-python yields it as an `error`
    # event (it does not raise), and the stream ends there, never completed.
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key="x", max_retries=0) as sdk:
        events = await stream_events(sdk)
    assert kinds(events)[-1] == "error"
    assert events[-1].message == "Upstream overloaded"
    assert "response.completed" not in kinds(events)


# --- faults mid-stream: never a completed response ---------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "code"),
    [
        pytest.param(
            fake.cut_fin(PREAMBLE + 2, chunked=True, chunks=EVENTS),
            "upstream_truncated",
            id="fin-chunked",
        ),
        pytest.param(
            fake.cut_fin(PREAMBLE + 2, chunked=False, chunks=EVENTS),
            "upstream_truncated",
            id="fin-close-delimited",
        ),
        pytest.param(
            fake.cut_fin(PREAMBLE + 2, chunked=True, chunks=EVENTS, half=EVENTS[6][:30]),
            "upstream_truncated",
            id="fin-mid-event",
        ),
        pytest.param(fake.cut_rst(PREAMBLE + 2, chunked=True, chunks=EVENTS), RESET, id="rst"),
        # Every event but the terminal one, then a clean end: the text is whole, yet only
        # `response.completed` says the response is over.
        pytest.param(
            fake.sse_stream(EVENTS[:-1], done=False),
            "upstream_truncated",
            id="clean-end-without-terminal",
        ),
    ],
)
async def test_a_cut_stream_raises_api_error_and_never_completes(
    upstream: FakeUpstream,
    sdk: openai.AsyncOpenAI,
    gateway: RunningGateway,
    client: aiohttp.ClientSession,
    behaviour: Any,
    code: str,
) -> None:
    upstream.script(MODEL, behaviour)

    error, received = await assert_cut_raises_api_error(sdk, MODEL, code)

    assert error.type in ("stream_interrupted", "network")
    assert text_of(received).startswith("".join(WORDS[:2]))
    # On the wire: what was relayed, then exactly one error event numbered after it.
    async with client.post(
        f"{gateway.base_url}/responses", json={"model": MODEL, "input": INPUT, "stream": True}
    ) as response:
        body = await response.read()
    assert body.count(b"event: error\n") == 1
    relayed, _, frame = body.partition(b"event: error\ndata: ")
    assert relayed.endswith(b"\n\n")
    assert frame.endswith(b"\n\n")
    assert b"\n" not in frame[:-2]
    payload = json.loads(frame)
    last = max(
        json.loads(line[6:])["sequence_number"]
        for line in relayed.split(b"\n")
        if line.startswith(b"data: ")
    )
    assert payload["sequence_number"] == last + 1
    assert payload["type"] == "error"
    assert payload["code"] in CODES.get(code, {code})
    assert payload["error"]["code"] == payload["code"]


async def test_a_stall_past_the_idle_deadline_raises_api_error_naming_the_limit(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.script(MODEL, fake.stall_after(PREAMBLE + 2, EVENTS))

    error, received = await assert_cut_raises_api_error(
        sdk, MODEL, "idle_timeout", {"x-gateway-idle-timeout": "0.2"}
    )

    assert error.type == "timeout"
    assert "idle" in error.message
    assert text_of(received) == "".join(WORDS[:2])
    for call in upstream.requests:
        await call.wait_closed_by_peer()


async def test_a_silent_upstream_past_the_first_byte_deadline_is_a_504(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.script(MODEL, fake.stall_before_first_event())

    with pytest.raises(openai.APIStatusError) as raised:
        await sdk.responses.create(
            model=MODEL,
            input=INPUT,
            stream=True,
            extra_headers={"x-gateway-first-byte-timeout": "0.2"},
        )

    assert raised.value.status_code == 504
    assert raised.value.code == "first_byte_timeout"
    assert "first" in raised.value.message
    await upstream.requests[0].wait_closed_by_peer()


# --- faults before the first byte --------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_upstream_429_raises_rate_limit_error_with_retry_after(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, stream: bool
) -> None:
    upstream.script(MODEL, fake.status(429, headers={"Retry-After": "7"}))

    with pytest.raises(openai.RateLimitError) as raised:
        await sdk.responses.create(model=MODEL, input=INPUT, stream=stream)

    assert raised.value.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "7"
    assert raised.value.code == "upstream_rate_limited"
    assert raised.value.request_id
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_upstream_400_raises_bad_request_error_with_the_upstreams_message(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, stream: bool
) -> None:
    message = "Invalid value for 'input': expected a string or a list of items."
    upstream.script(
        MODEL,
        fake.status(400, body=fake.openai_error(message, param="input", code="invalid_value")),
    )

    with pytest.raises(openai.BadRequestError) as raised:
        await sdk.responses.create(model=MODEL, input=INPUT, stream=stream)

    assert raised.value.status_code == 400
    assert message in raised.value.message
    assert (raised.value.code, raised.value.param) == ("invalid_value", "input")


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_upstream_500_raises_internal_server_error_with_status_502(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, stream: bool
) -> None:
    upstream.script(MODEL, fake.status(500))

    with pytest.raises(openai.InternalServerError) as raised:
        await sdk.responses.create(model=MODEL, input=INPUT, stream=stream)

    assert raised.value.status_code == 502
    assert raised.value.code == "upstream_status_5xx"
    assert "fake upstream error" not in raised.value.message  # the gateway's own words


async def test_unknown_model_raises_not_found_without_calling_upstream(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await sdk.responses.create(model="no-such-model", input=INPUT, stream=True)

    assert raised.value.code == "model_not_found"
    assert upstream.requests == []


async def test_a_malformed_request_is_a_400_in_openais_shape(
    gateway: RunningGateway, client: aiohttp.ClientSession, upstream: FakeUpstream
) -> None:
    async with client.post(
        f"{gateway.base_url}/responses", json={"model": MODEL, "stream": "yes"}
    ) as response:
        assert response.status == 400
        body = await response.json()
    assert set(body["error"]) >= {"message", "type", "code", "param"}
    assert upstream.requests == []


# --- failover before the first byte ------------------------------------------------------------


@pytest.mark.parametrize(
    "primary",
    [fake.status(500), fake.reset_before_headers(), fake.stall_before_headers()],
    ids=["500", "reset-before-headers", "silent"],
)
async def test_failover_before_the_first_byte_gives_the_backups_whole_answer(
    upstream: FakeUpstream, start_gateway: StartGateway, primary: Any
) -> None:
    upstream.script("primary", primary)
    upstream.script(
        "backup", fake.sse_stream(wire.responses_events(WORDS, model="backup"), done=False)
    )
    gw = await start_gateway(
        None,
        heartbeat=None,
        **chain(
            upstream,
            route(
                "gpt",
                target("primary", timeouts={"first_byte": 0.3}),
                target("backup"),
            ),
            retry={"attempts": 1},
        ),
    )
    async with (
        openai.AsyncOpenAI(base_url=gw.base_url, api_key="x", max_retries=0) as sdk,
        sdk.responses.stream(model="gpt", input=INPUT) as stream,
    ):
        events = [event async for event in stream]
        final = await stream.get_final_response()

    assert final.output_text == "".join(WORDS)
    assert final.model == "backup"
    assert kinds(events).count("response.created") == 1  # one seamless stream
    assert [call.model for call in upstream.requests] == ["primary", "backup"]
    assert {call.path for call in upstream.requests} == {"/v1/responses"}


# --- client disconnect -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "behaviour",
    [
        fake.stall_after(PREAMBLE + 2, EVENTS),
        fake.sse_stream(wire.responses_events(["x"] * 500), delay=0.005, done=False),
    ],
    ids=["stalled", "flowing"],
)
async def test_a_client_leaving_mid_stream_closes_the_upstream(
    upstream: FakeUpstream,
    start_gateway: StartGateway,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
    behaviour: Any,
) -> None:
    upstream.script(MODEL, behaviour)
    gw = await start_gateway(upstream, (MODEL,))
    body = {"model": MODEL, "input": INPUT, "stream": True}
    async with client.post(f"{gw.base_url}/responses", json=body) as response:
        assert response.status == 200
        for _ in range(PREAMBLE + 1):
            assert (await response.content.readuntil(b"\n\n")).startswith(b"event: response.")
        call = upstream.requests[0]
    await call.wait_closed_by_peer()
    await assert_recorded_once(logs, "streaming")


async def test_an_sdk_that_stops_reading_closes_the_upstream(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.script(MODEL, fake.stall_after(PREAMBLE + 2, EVENTS))

    stream = await sdk.responses.create(model=MODEL, input=INPUT, stream=True)
    async with stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                break

    await upstream.requests[0].wait_closed_by_peer()


async def test_a_client_leaving_before_the_first_event_closes_the_upstream(
    upstream: FakeUpstream,
    start_gateway: StartGateway,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
) -> None:
    upstream.script(MODEL, fake.stall_before_headers())
    gw = await start_gateway(upstream, (MODEL,), heartbeat=None)
    request = asyncio.ensure_future(
        client.post(
            f"{gw.base_url}/responses", json={"model": MODEL, "input": INPUT, "stream": True}
        )
    )
    call = await upstream.next_call()
    await call.started.wait()
    request.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await request
    await call.wait_closed_by_peer()
    await assert_recorded_once(logs, "waiting_first_byte")


# --- usage in metrics --------------------------------------------------------------------------


async def test_tokens_of_a_responses_stream_are_counted(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    upstream.script(MODEL, fake.sse_stream(EVENTS, done=False))

    await stream_events(sdk)

    await finished(gateway)
    assert value(gateway, "gateway_tokens_total", route=MODEL, upstream="fake", kind="input") == 9
    assert value(
        gateway, "gateway_tokens_total", route=MODEL, upstream="fake", kind="output"
    ) == len(WORDS)
    assert (
        value(
            gateway,
            "gateway_requests_total",
            endpoint="responses",
            route=MODEL,
            outcome="completed",
        )
        == 1
    )


async def test_tokens_of_a_responses_json_answer_are_counted(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    upstream.script(MODEL, fake.status(200, body=wire.responses_completion("one two")))

    await sdk.responses.create(model=MODEL, input=INPUT)

    await finished(gateway)
    assert value(gateway, "gateway_tokens_total", route=MODEL, upstream="fake", kind="input") == 9
    assert value(gateway, "gateway_tokens_total", route=MODEL, upstream="fake", kind="output") == 2
