"""The provider contract (gateway/providers/upstream.py), one suite run against every provider kind,
in every API it speaks.

Every kind in `PROVIDER_KINDS` gets a `Harness` (tests/providers/harnesses.py): a started
provider plus the model names that make it answer normally, answer an error status, stall or
fail mid-stream, driven in one API's `Wire` (Chat Completions, Responses, Messages). The tests
below only use that interface and never branch on the kind or the API; a new kind without a
harness fails the suite, and so does a kind that speaks an API its harness does not cover.

What every provider promises:
- a 2xx `open()` yields non-empty reads that make up a complete stream (or a JSON answer) of the
  request's API, and `on_sent` is called exactly once per open, before the first read;
- error statuses arrive as the matching `GatewayError` (429 with its Retry-After, 400 with the
  upstream's message, and its code where the dialect has one), and nothing but `GatewayError`s
  and `CancelledError` ever escapes;
- cancelling a task blocked in `open()` or in `chunks()` leaves nothing behind: the upstream
  connection is closed, no task of the provider survives, no ResourceWarning;
- `aclose()` is idempotent and closes the connection of a body that was not read to its end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from gateway.apis import APIS, OPENAI_CHAT
from gateway.errors import (
    GatewayError,
    UpstreamAuthFailed,
    UpstreamBadRequest,
    UpstreamRateLimited,
    UpstreamServerError,
)
from gateway.providers import (
    PROVIDER_KINDS,
    Provider,
    UpstreamRequest,
    UpstreamResponse,
)
from gateway.settings import LimitSettings, UpstreamSettings
from gateway.streaming import Context, Timeouts
from tests.conftest import UPSTREAM_KEY, StartGateway
from tests.providers.harnesses import HARNESSES, MESSAGES, WIRES, Harness
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream

# --- harnesses ---------------------------------------------------------------------------------

KIND_APIS = [
    pytest.param((kind, api), id=f"{kind}-{api}")
    for kind, (_, apis) in sorted(HARNESSES.items())
    for api in apis
]


def test_every_provider_kind_has_a_contract_harness() -> None:
    assert set(HARNESSES) == set(PROVIDER_KINDS)


async def test_every_api_a_kind_speaks_is_covered_by_its_harness(
    upstream: FakeUpstream,
) -> None:
    for kind, (factory, apis) in HARNESSES.items():
        subject = factory(upstream, apis[0])
        assert {api.name for api in subject.provider.apis if api.streams} == set(apis), kind
        assert all(subject.provider.speaks(WIRES[api].api) for api in apis)
        assert not subject.provider.speaks(dataclasses.replace(OPENAI_CHAT, name="other"))


def test_every_api_the_gateway_serves_has_a_wire() -> None:
    assert set(WIRES) == {api.name for api in APIS if api.streams}


@pytest.fixture(params=KIND_APIS)
async def harness(request: pytest.FixtureRequest, upstream: FakeUpstream) -> AsyncIterator[Harness]:
    kind, api = request.param
    if kind not in HARNESSES:
        pytest.fail(f"provider kind {kind!r} has no contract harness: add one to HARNESSES")
    factory, _ = HARNESSES[kind]
    subject = factory(upstream, api)
    await subject.provider.start()
    try:
        yield subject
    finally:
        await subject.provider.aclose()
        # Anything the provider dropped unclosed warns now, inside this test (warnings are errors).
        gc.collect()


@pytest.fixture
async def ctx() -> AsyncIterator[Context]:
    context = Context.with_timeout(10)
    yield context
    context.close()


def call(
    harness: Harness,
    behaviour: str,
    *,
    stream: bool = True,
    on_sent: Callable[[], None] | None = None,
) -> UpstreamRequest:
    model = harness.models[behaviour]
    wire = harness.wire
    return UpstreamRequest(
        path=wire.path,
        body=json.dumps(wire.body(model, stream)).encode(),
        model=model,
        stream=stream,
        timeouts=Timeouts(),
        api=wire.api,
        on_sent=on_sent,
    )


async def read_all(response: UpstreamResponse, log: list[str] | None = None) -> list[bytes]:
    chunks = []
    async for chunk in response.chunks():
        if log is not None:
            log.append("chunk")
        chunks.append(chunk)
    return chunks


async def drain(response: UpstreamResponse, into: list[bytes]) -> None:
    """Read the body into `into`, so that what arrived before a failure is kept."""
    async for chunk in response.chunks():
        into.append(chunk)


def new_tasks(before: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    """Tasks started since `before` that still run, except the fake upstream's own server tasks."""
    server = {"RequestHandler.start", "RequestHandler._handle_request"}
    return [
        task
        for task in asyncio.all_tasks()
        if task not in before
        and not task.done()
        and getattr(task.get_coro(), "__qualname__", "") not in server
    ]


# --- a normal answer ---------------------------------------------------------------------------


async def test_stream_yields_a_complete_event_stream_of_the_requests_api(
    harness: Harness, ctx: Context
) -> None:
    response = await harness.provider.open(ctx, call(harness, "stream"))
    try:
        assert 200 <= response.status < 300
        chunks = await read_all(response)
    finally:
        await response.aclose()
        await response.aclose()

    assert chunks
    assert all(isinstance(chunk, bytes) for chunk in chunks)
    assert all(chunks)
    assert harness.wire.stream_text(b"".join(chunks))


async def test_non_streaming_request_returns_the_apis_json_answer(
    harness: Harness, ctx: Context
) -> None:
    response = await harness.provider.open(ctx, call(harness, "complete", stream=False))
    try:
        assert 200 <= response.status < 300
        chunks = await read_all(response)
    finally:
        await response.aclose()

    assert all(chunks)
    assert harness.wire.completion_text(b"".join(chunks))


@pytest.mark.parametrize(("behaviour", "stream"), [("stream", True), ("complete", False)])
async def test_on_sent_is_called_once_per_open_before_the_first_chunk(
    harness: Harness, ctx: Context, behaviour: str, stream: bool
) -> None:
    log: list[str] = []
    request = call(harness, behaviour, stream=stream, on_sent=lambda: log.append("sent"))
    response = await harness.provider.open(ctx, request)
    try:
        await read_all(response, log)
    finally:
        await response.aclose()

    assert log.count("sent") == 1
    assert log[0] == "sent"
    assert "chunk" in log


@pytest.mark.parametrize(
    ("behaviour", "stream", "error"),
    [("server_error", True, UpstreamServerError), ("bad_request", False, UpstreamBadRequest)],
)
async def test_on_sent_is_called_once_when_the_upstream_answers_an_error(
    harness: Harness, ctx: Context, behaviour: str, stream: bool, error: type[GatewayError]
) -> None:
    log: list[str] = []
    request = call(harness, behaviour, stream=stream, on_sent=lambda: log.append("sent"))
    with pytest.raises(error):
        await harness.provider.open(ctx, request)

    assert log == ["sent"]


# --- error statuses ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "complete"])
async def test_429_raises_rate_limited_with_retry_after(
    harness: Harness, ctx: Context, stream: bool
) -> None:
    with pytest.raises(UpstreamRateLimited) as caught:
        await harness.provider.open(ctx, call(harness, "rate_limited", stream=stream))

    assert caught.value.retry_after == "5"
    assert caught.value.code == "upstream_rate_limited"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "complete"])
@pytest.mark.parametrize(
    ("behaviour", "error"),
    [("server_error", UpstreamServerError), ("auth_failed", UpstreamAuthFailed)],
)
async def test_server_and_auth_errors_raise_with_the_gateways_own_message(
    harness: Harness, ctx: Context, behaviour: str, error: type[GatewayError], stream: bool
) -> None:
    with pytest.raises(error) as caught:
        await harness.provider.open(ctx, call(harness, behaviour, stream=stream))

    assert caught.value.message == error.default_message
    assert caught.value.http_status == 502


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "complete"])
async def test_400_context_length_raises_bad_request_with_the_upstreams_message_and_code(
    harness: Harness, ctx: Context, stream: bool
) -> None:
    with pytest.raises(UpstreamBadRequest) as caught:
        await harness.provider.open(ctx, call(harness, "bad_request", stream=stream))

    if harness.wire.reports_codes:  # OpenAI's error shape has a code and a param
        assert caught.value.upstream_code == "context_length_exceeded"
        assert caught.value.param == harness.wire.input_field  # the API's own input field
    assert "maximum context length" in caught.value.message
    assert caught.value.http_status == 400


@pytest.mark.parametrize(
    "behaviour", ["rate_limited", "server_error", "auth_failed", "bad_request"]
)
async def test_error_statuses_are_gateway_errors_and_nothing_else_escapes(
    harness: Harness, ctx: Context, behaviour: str
) -> None:
    try:
        await harness.provider.open(ctx, call(harness, behaviour))
    except GatewayError:
        pass
    except Exception as exc:
        pytest.fail(f"{type(exc).__module__}.{type(exc).__qualname__} escaped: {exc!r}")
    else:
        pytest.fail("open() returned for an error status")


async def test_failure_mid_stream_is_a_retryable_gateway_error_after_the_first_chunks(
    harness: Harness, ctx: Context
) -> None:
    response = await harness.provider.open(ctx, call(harness, "reset_mid_stream"))
    received: list[bytes] = []
    try:
        with pytest.raises(GatewayError) as caught:
            await drain(response, received)
    finally:
        await response.aclose()

    assert received
    assert caught.value.retryable


# --- cancellation and close --------------------------------------------------------------------


async def consume_until_blocked(
    harness: Harness, ctx: Context, behaviour: str
) -> tuple[asyncio.Task[None], list[str]]:
    """A task that opens `behaviour` and reads it (closing it in `finally`), once it is blocked.

    Blocked means: the request was sent, the upstream holds it, and for a mid-stream stall the
    first chunk was read. The returned log records "opened" and each "chunk".
    """
    sent = asyncio.Event()
    first_chunk = asyncio.Event()
    log: list[str] = []

    async def consume() -> None:
        response = await harness.provider.open(ctx, call(harness, behaviour, on_sent=sent.set))
        log.append("opened")
        try:
            async for _ in response.chunks():
                log.append("chunk")
                first_chunk.set()
        finally:
            await response.aclose()

    task = asyncio.create_task(consume())
    await sent.wait()
    if behaviour == "stall_mid_stream":
        await first_chunk.wait()
    await harness.request_arrived()
    return task, log


async def test_cancel_while_waiting_for_headers_closes_the_connection_and_leaves_no_task(
    harness: Harness, ctx: Context
) -> None:
    before = asyncio.all_tasks()
    task, log = await consume_until_blocked(harness, ctx, "stall_before_headers")

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert "chunk" not in log
    await harness.connection_closed()
    assert new_tasks(before) == []


async def test_cancel_while_reading_mid_stream_closes_the_connection_and_leaves_no_task(
    harness: Harness, ctx: Context
) -> None:
    before = asyncio.all_tasks()
    task, log = await consume_until_blocked(harness, ctx, "stall_mid_stream")

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert "chunk" in log
    await harness.connection_closed()
    assert new_tasks(before) == []


async def test_aclose_of_an_unfinished_body_closes_the_connection(
    harness: Harness, ctx: Context
) -> None:
    response = await harness.provider.open(ctx, call(harness, "stall_mid_stream"))
    chunks = response.chunks()
    assert await anext(chunks)
    await harness.request_arrived()

    await response.aclose()
    await harness.connection_closed()
    await response.aclose()

    # Reading after close never hangs and never yields more data: it ends or raises.
    try:
        async with asyncio.timeout(10):
            rest = [chunk async for chunk in chunks]
    except GatewayError:
        rest = []
    assert rest == []


async def test_aclose_of_a_fully_read_body_twice_is_fine(harness: Harness, ctx: Context) -> None:
    response = await harness.provider.open(ctx, call(harness, "complete", stream=False))
    await read_all(response)
    await response.aclose()
    await response.aclose()


async def test_provider_is_reusable_after_an_error_and_a_cancel(
    harness: Harness, ctx: Context
) -> None:
    with pytest.raises(UpstreamServerError):
        await harness.provider.open(ctx, call(harness, "server_error"))
    task, _ = await consume_until_blocked(harness, ctx, "stall_mid_stream")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    response = await harness.provider.open(ctx, call(harness, "stream"))
    try:
        body = b"".join(await read_all(response))
    finally:
        await response.aclose()
    assert harness.wire.stream_text(body)


# --- credentials (HTTP providers) --------------------------------------------------------------

AUTH_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "api-key", "cookie")


async def open_and_close(provider: Provider, model: str) -> None:
    ctx = Context.with_timeout(10)
    request = UpstreamRequest(
        path="/chat/completions",
        body=json.dumps({"model": model, "messages": MESSAGES, "stream": True}).encode(),
        model=model,
        stream=True,
        timeouts=Timeouts(),
        api=OPENAI_CHAT,
    )
    try:
        response = await provider.open(ctx, request)
        try:
            await read_all(response)
        finally:
            await response.aclose()
    finally:
        ctx.close()


async def test_openai_authenticates_with_the_configured_key_only(upstream: FakeUpstream) -> None:
    settings = UpstreamSettings(kind="openai", base_url=upstream.base_url, api_key=UPSTREAM_KEY)
    provider = PROVIDER_KINDS["openai"]("fake", settings, LimitSettings())
    await provider.start()
    try:
        await open_and_close(provider, "m")
    finally:
        await provider.aclose()

    (received,) = upstream.requests
    auth = [(name.lower(), value) for name, value in received.headers.items()]
    assert [pair for pair in auth if pair[0] in AUTH_HEADERS] == [
        ("authorization", f"Bearer {UPSTREAM_KEY}")
    ]


async def test_openai_without_a_key_sends_no_authorization(upstream: FakeUpstream) -> None:
    settings = UpstreamSettings(kind="openai", base_url=upstream.base_url)
    provider = PROVIDER_KINDS["openai"]("fake", settings, LimitSettings())
    await provider.start()
    try:
        await open_and_close(provider, "m")
    finally:
        await provider.aclose()

    (received,) = upstream.requests
    assert [name for name in received.headers if name.lower() in AUTH_HEADERS] == []


async def test_openai_forwards_the_body_byte_exact_to_the_configured_path(
    upstream: FakeUpstream,
) -> None:
    settings = UpstreamSettings(kind="openai", base_url=upstream.base_url, api_key=UPSTREAM_KEY)
    provider = PROVIDER_KINDS["openai"]("fake", settings, LimitSettings())
    body = '{"model": "m", "messages": [{"role": "user", "content": "h\u00e9"}], "x": 1}'.encode()
    ctx = Context.with_timeout(10)
    await provider.start()
    try:
        request = UpstreamRequest(
            path="/chat/completions",
            body=body,
            model="m",
            stream=True,
            timeouts=Timeouts(),
            api=OPENAI_CHAT,
            request_id="req-123",
        )
        response = await provider.open(ctx, request)
        try:
            await read_all(response)
        finally:
            await response.aclose()
    finally:
        ctx.close()
        await provider.aclose()

    (received,) = upstream.requests
    assert (received.method, received.path, received.raw_body) == (
        "POST",
        "/v1/chat/completions",
        body,
    )
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["Accept"] == "text/event-stream"
    assert received.headers["X-Request-Id"] == "req-123"


async def test_client_credentials_never_reach_the_upstream_through_the_gateway(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(upstream, models=("m",))
    client_auth = {
        "Authorization": "Bearer sk-client-own-key-0123456789",
        "x-api-key": "sk-client-own-key-0123456789",
        "api-key": "sk-client-own-key-0123456789",
        "Cookie": "session=client",
        "Proxy-Authorization": "Basic Y2xpZW50OnNlY3JldA==",
    }
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            f"{gateway.url}/v1/chat/completions", json=body, headers=client_auth
        ) as response,
    ):
        assert response.status == 200
        await response.read()

    (received,) = upstream.requests
    auth = [(name.lower(), value) for name, value in received.headers.items()]
    assert [pair for pair in auth if pair[0] in AUTH_HEADERS] == [
        ("authorization", f"Bearer {UPSTREAM_KEY}")
    ]
    assert "sk-client-own-key" not in repr(dict(received.headers))


@pytest.mark.parametrize("api", HARNESSES["openai"][1])
async def test_openai_sends_each_api_to_its_own_upstream_path(
    upstream: FakeUpstream, api: str
) -> None:
    wire = WIRES[api]
    upstream.script("m", fake.sse_stream(wire.upstream_events(), done=False))
    settings = UpstreamSettings(kind="openai", base_url=upstream.base_url, api_key=UPSTREAM_KEY)
    provider = PROVIDER_KINDS["openai"]("fake", settings, LimitSettings())
    body = json.dumps(wire.body("m", True)).encode()
    ctx = Context.with_timeout(10)
    await provider.start()
    try:
        request = UpstreamRequest(
            path=wire.api.upstream_path,
            body=body,
            model="m",
            stream=True,
            timeouts=Timeouts(),
            api=wire.api,
        )
        response = await provider.open(ctx, request)
        try:
            relayed = b"".join(await read_all(response))
        finally:
            await response.aclose()
    finally:
        ctx.close()
        await provider.aclose()

    (received,) = upstream.requests
    assert (received.path, received.raw_body) == ("/v1" + wire.api.upstream_path, body)
    assert relayed == b"".join(wire.upstream_events())  # byte-exact
    assert wire.stream_text(relayed) == "Hello!"
