"""The official `anthropic` SDK as the client of a gateway, before the fake upstream or the mock.

What an SDK user sees is the contract: `messages.stream(...)` and `create(stream=True)` reassemble
exactly the upstream's text and end cleanly; a failure after the response was committed (a cut,
a stall, the upstream's own `event: error`) raises `anthropic.APIStatusError` - the SDK's class
for a mid-stream error event - with the Anthropic error object as its body; a failure before it
raises the status-specific class (`RateLimitError`, `BadRequestError`, `NotFoundError`,
`InternalServerError` for the gateway's 502s, `GatewayTimeoutError` for its 504s). The client's
own key never reaches the upstream.

The gateway runs in the test's event loop: the async client is used, and the synchronous one in
a worker thread. Clients never retry (`max_retries=0`): every request is one upstream call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest

from gateway.server.lifecycle import LIFECYCLE
from tests.conftest import UPSTREAM_KEY, RunningGateway, StartGateway
from tests.observability.scrape import finished, value
from tests.support import anthropic_wire as claude
from tests.support import fake_upstream as fake
from tests.support.anthropic_gateway import CLAUDE, GPT, MESSAGES, anthropic_routes
from tests.support.fake_upstream import FakeUpstream

CLIENT_KEY = "sk-ant-client-key-should-stay-here"
WORDS = ["The ", "quick ", "brown ", "fox ", "jumps."]
MOCK_ANSWER = (
    "Hello! This is the sse-gateway mock provider, streaming one word at a time. You said: hi there"
)


@pytest.fixture
async def gateway(upstream: FakeUpstream, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(None, **anthropic_routes(upstream), heartbeat=None)


@pytest.fixture
async def sdk(gateway: RunningGateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0
    ) as client:
        yield client


def error_of(caught: pytest.ExceptionInfo[anthropic.APIStatusError]) -> dict[str, Any]:
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    error: dict[str, Any] = body["error"]
    return error


async def stream_text(sdk: anthropic.AsyncAnthropic, model: str = CLAUDE, **kw: Any) -> str:
    async with sdk.messages.stream(model=model, max_tokens=64, messages=MESSAGES, **kw) as stream:
        return "".join([text async for text in stream.text_stream])


async def drain_text(sdk: anthropic.AsyncAnthropic, into: list[str], **kw: Any) -> None:
    """Append the streamed text to `into` until the stream ends or raises."""
    async with sdk.messages.stream(model=CLAUDE, max_tokens=64, messages=MESSAGES, **kw) as s:
        async for piece in s.text_stream:
            into.append(piece)


# --- answers -----------------------------------------------------------------------------------


async def test_messages_stream_reassembles_the_upstream_text_and_final_message(
    upstream: FakeUpstream, sdk: anthropic.AsyncAnthropic
) -> None:
    upstream.script(CLAUDE, fake.sse_stream(claude.anthropic_events(WORDS), done=False))

    async with sdk.messages.stream(model=CLAUDE, max_tokens=64, messages=MESSAGES) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()

    assert text == "".join(WORDS)
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (25, len(WORDS))
    call = await upstream.next_call()
    assert call.body["stream"] is True
    assert call.body["messages"] == MESSAGES


async def test_create_stream_yields_every_event_type_in_order(
    upstream: FakeUpstream, sdk: anthropic.AsyncAnthropic
) -> None:
    upstream.script(CLAUDE, fake.sse_stream(claude.anthropic_events(["Hi"]), done=False))

    stream = await sdk.messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True)
    async with stream:
        types = [event.type async for event in stream]

    # `ping` reaches the client (the raw tests hold the bytes); the SDK itself skips it.
    assert types == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


async def test_create_without_stream_returns_the_upstreams_message(
    upstream: FakeUpstream, sdk: anthropic.AsyncAnthropic
) -> None:
    upstream.script(CLAUDE, fake.status(200, body=claude.anthropic_message("Hello there!")))

    message = await sdk.messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES)

    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello there!"
    assert message.stop_reason == "end_turn"


def sync_stream_text(base_url: str, model: str) -> str:
    with (
        anthropic.Anthropic(base_url=base_url, api_key=CLIENT_KEY, max_retries=0) as client,
        client.messages.stream(model=model, max_tokens=64, messages=MESSAGES) as stream,
    ):
        return "".join(stream.text_stream)


async def test_sync_client_streams_through_the_gateway(
    upstream: FakeUpstream, gateway: RunningGateway
) -> None:
    upstream.script(CLAUDE, fake.sse_stream(claude.anthropic_events(WORDS), done=False))

    text = await asyncio.to_thread(sync_stream_text, gateway.url, CLAUDE)

    assert text == "".join(WORDS)


async def test_the_gateways_key_goes_upstream_never_the_clients(
    upstream: FakeUpstream, sdk: anthropic.AsyncAnthropic
) -> None:
    upstream.script(CLAUDE, fake.sse_stream(claude.anthropic_events(["ok"]), done=False))

    await stream_text(sdk)

    call = await upstream.next_call()
    assert call.headers["x-api-key"] == UPSTREAM_KEY
    assert "Authorization" not in call.headers
    assert all(CLIENT_KEY not in value for value in call.headers.values())
    # The SDK's own version is passed on (it is newer than the configured default).
    assert call.headers["anthropic-version"] == sdk.default_headers["anthropic-version"]
    assert call.headers["anthropic-version"] != "2023-06-01"


async def test_heartbeats_between_slow_events_do_not_disturb_the_sdk(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    events = claude.anthropic_events(WORDS)
    upstream.script(CLAUDE, fake.sse_stream(events, delay=0.1, done=False))
    gw = await start_gateway(None, **anthropic_routes(upstream), heartbeat=0.02)

    async with anthropic.AsyncAnthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0) as sdk:
        stream = await sdk.messages.create(
            model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True
        )
        async with stream:
            raw = stream.response
            received = [event async for event in stream]

    assert raw.headers["content-type"].startswith("text/event-stream")
    texts = [e.delta.text for e in received if e.type == "content_block_delta"]
    assert texts == WORDS
    assert received[-1].type == "message_stop"
    # The SDK did read heartbeats: the bytes written beyond the upstream's are `: ping`s.
    await finished(gw)
    extra = int(value(gw, "gateway_relayed_bytes_total", route=CLAUDE)) - len(b"".join(events))
    assert extra > 0
    assert extra % len(b": ping\n\n") == 0


# --- the built-in mock, with no configuration at all -------------------------------------------


async def test_mock_answers_both_sdks_with_no_configuration(
    start_gateway: StartGateway,
) -> None:
    gw = await start_gateway()  # defaults: the built-in mock, as `gateway` with no config

    async with anthropic.AsyncAnthropic(base_url=gw.url, api_key="unused", max_retries=0) as client:
        async with client.messages.stream(model="mock", max_tokens=64, messages=MESSAGES) as s:
            text = "".join([piece async for piece in s.text_stream])
            final = await s.get_final_message()
        message = await client.messages.create(model="mock", max_tokens=64, messages=MESSAGES)

    assert text == MOCK_ANSWER
    assert final.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert message.content[0].text == MOCK_ANSWER


# --- errors after commit: the SDK raises APIStatusError ----------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "headers", "type"),
    [
        (fake.cut_fin(4, chunked=True, chunks=claude.anthropic_events(WORDS)), {}, "api_error"),
        (fake.cut_rst(4, chunked=True, chunks=claude.anthropic_events(WORDS)), {}, "api_error"),
        (
            fake.stall_after(4, claude.anthropic_events(WORDS)),
            {"x-gateway-idle-timeout": "0.2"},
            "timeout_error",
        ),
        (
            fake.sse_stream(
                [*claude.anthropic_events(WORDS)[:4], claude.error_event("overloaded_error")],
                done=False,
            ),
            {},
            "overloaded_error",
        ),
    ],
    ids=["cut-fin", "cut-rst", "idle-timeout", "upstream-error-event"],
)
async def test_failure_mid_stream_raises_api_status_error_after_the_first_text(
    upstream: FakeUpstream,
    sdk: anthropic.AsyncAnthropic,
    behaviour: fake.Behaviour,
    headers: dict[str, str],
    type: str,
) -> None:
    upstream.script(CLAUDE, behaviour)
    received: list[str] = []

    with pytest.raises(anthropic.APIStatusError) as caught:
        await drain_text(sdk, received, extra_headers=headers)

    assert received == WORDS[:1]
    assert caught.type is anthropic.APIStatusError  # the SDK's mid-stream class, not a 5xx one
    assert caught.value.status_code == 200
    assert error_of(caught)["type"] == type


# --- errors before commit: status-specific exceptions ------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "exception", "status", "type"),
    [
        (
            fake.status(
                429,
                body=claude.anthropic_error("rate_limit_error", "slow down"),
                headers={"retry-after": "5"},
            ),
            anthropic.RateLimitError,
            429,
            "rate_limit_error",
        ),
        (
            fake.status(529, body=claude.anthropic_error("overloaded_error", "Overloaded")),
            anthropic.InternalServerError,
            502,
            "api_error",
        ),
        (
            fake.status(401, body=claude.anthropic_error("authentication_error", "bad key")),
            anthropic.InternalServerError,
            502,
            "api_error",
        ),
        (
            fake.status(400, body=claude.anthropic_error("invalid_request_error", "too long")),
            anthropic.BadRequestError,
            400,
            "invalid_request_error",
        ),
        (fake.stall_before_headers(), anthropic.GatewayTimeoutError, 504, "timeout_error"),
    ],
    ids=["429", "529", "401", "400", "first-byte-timeout"],
)
async def test_failure_before_the_first_event_raises_the_status_specific_error(
    upstream: FakeUpstream,
    sdk: anthropic.AsyncAnthropic,
    behaviour: fake.Behaviour,
    exception: type[anthropic.APIStatusError],
    status: int,
    type: str,
) -> None:
    upstream.script(CLAUDE, behaviour)
    limit = {"x-gateway-first-byte-timeout": "0.2"}

    with pytest.raises(exception) as caught:
        await stream_text(sdk, extra_headers=limit)

    assert caught.type is exception
    assert caught.value.status_code == status
    assert error_of(caught)["type"] == type
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "5"
    if status == 400:
        assert error_of(caught)["message"] == "too long"


async def test_a_draining_gateway_raises_service_unavailable_error(
    gateway: RunningGateway, sdk: anthropic.AsyncAnthropic
) -> None:
    gateway.app[LIFECYCLE].begin_drain()

    with pytest.raises(anthropic.ServiceUnavailableError) as caught:
        await sdk.messages.create(model=CLAUDE, max_tokens=8, messages=MESSAGES)

    assert caught.value.status_code == 503
    assert error_of(caught)["type"] == "overloaded_error"


async def test_unknown_model_raises_not_found_error(sdk: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        await sdk.messages.create(model="nobody-routes-this", max_tokens=8, messages=MESSAGES)

    assert error_of(caught)["type"] == "not_found_error"


async def test_counting_tokens_of_a_model_of_the_other_api_raises_bad_request_error(
    upstream: FakeUpstream, sdk: anthropic.AsyncAnthropic
) -> None:
    # Messages are translated to an OpenAI upstream; token counting has no translation.
    with pytest.raises(anthropic.BadRequestError) as caught:
        await sdk.messages.count_tokens(model=GPT, messages=[{"role": "user", "content": "hi"}])

    assert "/v1/chat/completions" in error_of(caught)["message"]
    assert upstream.requests == []


async def test_models_list_gives_the_anthropic_sdk_the_models_it_can_call(
    sdk: anthropic.AsyncAnthropic, gateway: RunningGateway
) -> None:
    page = await sdk.models.list()

    names = [model.id for model in page.data]
    assert CLAUDE in names
    assert GPT in names  # routed to an OpenAI upstream: Messages are translated to it
    assert all(model.type == "model" and model.display_name == model.id for model in page.data)
    assert page.has_more is False
