"""The official `openai` SDK as the client of a gateway, in front of the fake upstream or the mock.

What an SDK user sees is the contract: a stream reassembles exactly the upstream's text and ends
cleanly; a failure after the response was committed raises `openai.APIError` carrying the
gateway's category (`type`) and `code`; a failure before it becomes the status-specific SDK
exception (`RateLimitError`, `BadRequestError`, `NotFoundError`, `InternalServerError` for the
gateway's 502s). The client's own API key never reaches the upstream.

The gateway runs in the test's event loop, so the synchronous `openai.OpenAI` client runs in a
worker thread (`asyncio.to_thread`). Clients never retry (`max_retries=0`): every request here
is exactly one upstream call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from gateway.settings import MOCK_MODELS
from tests.conftest import UPSTREAM_KEY, RunningGateway, StartGateway
from tests.support.fake_upstream import (
    FakeUpstream,
    cut_fin,
    json_completion,
    openai_chunks,
    openai_error,
    sse_stream,
    stall_after,
    status,
)

MODEL = "fake-model"
CLIENT_KEY = "client-key"
MESSAGES: list[Any] = [{"role": "user", "content": "hi there"}]
WORDS = ["The ", "quick ", "brown ", "fox ", "jumps."]
#: The fast built-in mock (no pacing between words).
FAST_MOCK = {"mock": {"kind": "mock", "mock": {"chunk_delay": 0}}}
MOCK_ANSWER = (
    "Hello! This is the sse-gateway mock provider, streaming one word at a time. You said: hi there"
)


@pytest.fixture
async def gateway(upstream: FakeUpstream, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(upstream, models=(MODEL, "other-model"))


@pytest.fixture
async def sdk(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=CLIENT_KEY, max_retries=0
    ) as client:
        yield client


async def collect(stream: openai.AsyncStream[Any]) -> tuple[str, list[Any]]:
    """The concatenated delta text and the chunks of a stream that ends cleanly."""
    chunks: list[Any] = []
    await drain(stream, chunks)
    return text_of(chunks), chunks


async def drain(stream: openai.AsyncStream[Any], into: list[Any]) -> None:
    """Append the stream's chunks to `into` until it ends or raises; always close it."""
    async with stream:
        async for chunk in stream:
            into.append(chunk)


def text_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def sync_stream_text(base_url: str, model: str) -> tuple[str, str | None]:
    """Stream with the synchronous client (run it in a thread): (text, last finish_reason)."""
    with openai.OpenAI(base_url=base_url, api_key=CLIENT_KEY, max_retries=0) as client:
        chunks: list[Any] = []
        with client.chat.completions.create(model=model, messages=MESSAGES, stream=True) as stream:
            chunks.extend(stream)
    return text_of(chunks), chunks[-1].choices[0].finish_reason


def assert_gateway_credentials_only(upstream: FakeUpstream) -> None:
    """Every upstream call carried the gateway's key and nothing of the client's."""
    assert upstream.requests, "the upstream was never called"
    for call in upstream.requests:
        assert call.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert all(CLIENT_KEY not in value for value in call.headers.values())


# --- streams that succeed ----------------------------------------------------------------------


async def test_async_stream_reassembles_the_upstream_text_and_ends_cleanly(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.script(MODEL, sse_stream(openai_chunks(WORDS)))

    stream = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    text, chunks = await collect(stream)

    assert text == "".join(WORDS)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len(chunks) == len(WORDS) + 1
    call = await upstream.next_call()
    assert call.body["stream"] is True
    assert call.body["messages"] == MESSAGES


async def test_sync_stream_reassembles_the_upstream_text_and_ends_cleanly(
    upstream: FakeUpstream, gateway: RunningGateway
) -> None:
    upstream.script(MODEL, sse_stream(openai_chunks(WORDS)))

    text, finish_reason = await asyncio.to_thread(sync_stream_text, gateway.base_url, MODEL)

    assert text == "".join(WORDS)
    assert finish_reason == "stop"


async def test_client_api_key_never_reaches_the_upstream(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.script(MODEL, sse_stream())
    upstream.script("other-model", json_completion())

    await collect(await sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    await sdk.chat.completions.create(model="other-model", messages=MESSAGES)

    assert len(upstream.requests) == 2
    assert_gateway_credentials_only(upstream)


async def test_stream_without_done_after_finish_chunk_ends_cleanly(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.script(MODEL, sse_stream(openai_chunks(WORDS), done=False))

    stream = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    text, chunks = await collect(stream)

    assert text == "".join(WORDS)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_async_stream_from_builtin_mock_reassembles_its_answer(
    start_gateway: StartGateway,
) -> None:
    gw = await start_gateway(upstreams=FAST_MOCK)
    async with openai.AsyncOpenAI(base_url=gw.base_url, api_key=CLIENT_KEY, max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(model="mock", messages=MESSAGES, stream=True)
        text, chunks = await collect(stream)

    assert text == MOCK_ANSWER
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_sync_stream_from_builtin_mock_reassembles_its_answer(
    start_gateway: StartGateway,
) -> None:
    gw = await start_gateway(upstreams=FAST_MOCK)

    text, finish_reason = await asyncio.to_thread(sync_stream_text, gw.base_url, "mock-no-done")

    assert text == MOCK_ANSWER
    assert finish_reason == "stop"


# --- failures after the response was committed -------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "headers", "category", "code"),
    [
        pytest.param(
            cut_fin(2, chunked=True), {}, "stream_interrupted", "upstream_truncated", id="cut-fin"
        ),
        pytest.param(
            stall_after(2),
            {"x-gateway-idle-timeout": "0.2"},
            "timeout",
            "idle_timeout",
            id="idle-stall",
        ),
    ],
)
async def test_mid_stream_failure_raises_api_error_with_category_and_code(
    upstream: FakeUpstream,
    sdk: openai.AsyncOpenAI,
    behaviour: Any,
    headers: dict[str, str],
    category: str,
    code: str,
) -> None:
    upstream.script(MODEL, behaviour)
    stream = await sdk.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, extra_headers=headers
    )
    received: list[Any] = []

    with pytest.raises(openai.APIError) as raised:
        await drain(stream, received)

    error = raised.value
    assert not isinstance(error, openai.APIStatusError)  # the status was a 200
    assert error.code == code
    assert error.type == category
    assert isinstance(error.body, dict)
    assert error.body["code"] == code
    assert error.body["type"] == category
    assert error.message  # for humans; never empty
    assert text_of(received) == "Hello"  # the two events before the failure were relayed
    call = await upstream.next_call()
    await call.wait_finished()


@pytest.mark.parametrize(
    ("model", "code"),
    [("mock-cut", "upstream_truncated"), ("mock-reset", "connection_reset")],
)
async def test_builtin_mock_mid_stream_failure_raises_api_error(
    start_gateway: StartGateway, model: str, code: str
) -> None:
    gw = await start_gateway(upstreams=FAST_MOCK)
    async with openai.AsyncOpenAI(base_url=gw.base_url, api_key=CLIENT_KEY, max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(model=model, messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError) as raised:
            await collect(stream)

    assert raised.value.code == code
    assert not isinstance(raised.value, openai.APIStatusError)


# --- failures before the response was committed ------------------------------------------------


async def test_upstream_429_raises_rate_limit_error_with_retry_after(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.script(MODEL, status(429, headers={"Retry-After": "7"}))

    with pytest.raises(openai.RateLimitError) as raised:
        await sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)

    error = raised.value
    assert error.status_code == 429
    assert error.response.headers["Retry-After"] == "7"
    assert error.code == "upstream_rate_limited"
    assert error.type == "rate_limit_error"  # OpenAI's vocabulary; the category is beside it
    assert error.body["category"] == "rate_limit"
    assert error.response.headers["x-should-retry"] == "true"
    assert error.request_id  # the gateway's x-request-id, for support tickets
    assert len(upstream.requests) == 1  # max_retries=0: the SDK did not retry


async def test_upstream_500_raises_internal_server_error_with_status_502(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.script(MODEL, status(500))

    with pytest.raises(openai.InternalServerError) as raised:
        await sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)

    assert raised.value.status_code == 502
    assert raised.value.code == "upstream_status_5xx"
    assert raised.value.type == "server_error"
    assert raised.value.body["category"] == "api_error"
    assert "fake upstream error" not in raised.value.message  # the gateway's own words


@pytest.mark.parametrize("upstream_status", [401, 403])
async def test_upstream_auth_failure_is_502_not_the_clients_auth_error(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, upstream_status: int
) -> None:
    upstream.script(MODEL, status(upstream_status))

    with pytest.raises(openai.APIStatusError) as raised:
        await sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)

    error = raised.value
    assert not isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError)
    assert isinstance(error, openai.InternalServerError)
    assert error.status_code == 502
    assert error.code == "upstream_auth_failed"


async def test_upstream_400_passes_provider_code_to_bad_request_error(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    message = "This model's maximum context length is 8192 tokens."
    body = openai_error(message, code="context_length_exceeded", param="messages")
    upstream.script(MODEL, status(400, body=body))

    with pytest.raises(openai.BadRequestError) as raised:
        await sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)

    error = raised.value
    assert error.status_code == 400
    assert error.code == "context_length_exceeded"
    assert error.param == "messages"
    assert message in error.message


async def test_upstream_400_message_is_sanitised_of_urls_and_keys(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    message = f"bad key {UPSTREAM_KEY} for https://internal.example/v1/chat, see docs"
    upstream.script(MODEL, status(400, body=openai_error(message, code="invalid_value")))

    with pytest.raises(openai.BadRequestError) as raised:
        await sdk.chat.completions.create(model=MODEL, messages=MESSAGES)

    text = str(raised.value.body)
    assert UPSTREAM_KEY not in text
    assert "internal.example" not in text
    assert "see docs" in raised.value.message


async def test_unknown_model_raises_not_found_without_calling_upstream(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await sdk.chat.completions.create(model="no-such-model", messages=MESSAGES, stream=True)

    assert raised.value.code == "model_not_found"
    assert "no-such-model" in raised.value.message
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("model", "exception", "status_code", "code"),
    [
        ("mock-429", openai.RateLimitError, 429, "upstream_rate_limited"),
        ("mock-500", openai.InternalServerError, 502, "upstream_status_5xx"),
        ("mock-401", openai.InternalServerError, 502, "upstream_auth_failed"),
        ("mock-400", openai.BadRequestError, 400, "context_length_exceeded"),
    ],
)
async def test_builtin_mock_errors_raise_the_status_specific_sdk_exception(
    start_gateway: StartGateway,
    model: str,
    exception: type[openai.APIStatusError],
    status_code: int,
    code: str,
) -> None:
    gw = await start_gateway(upstreams=FAST_MOCK)
    async with openai.AsyncOpenAI(base_url=gw.base_url, api_key=CLIENT_KEY, max_retries=0) as sdk:
        with pytest.raises(exception) as raised:
            await sdk.chat.completions.create(model=model, messages=MESSAGES, stream=True)

    assert raised.value.status_code == status_code
    assert raised.value.code == code
    if status_code == 429:
        assert raised.value.response.headers["Retry-After"] == "5"


# --- non-streaming and models ------------------------------------------------------------------


async def test_non_streaming_completion_returns_the_upstream_json(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.script(MODEL, json_completion("Hi from the fake", model=MODEL))

    completion = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES)

    assert completion.id == "chatcmpl-fake"
    assert completion.model == MODEL
    assert completion.choices[0].message.content == "Hi from the fake"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 4
    call = await upstream.next_call()
    assert call.body.get("stream", False) is False
    assert call.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"


async def test_sync_non_streaming_completion_returns_the_upstream_json(
    upstream: FakeUpstream, gateway: RunningGateway
) -> None:
    upstream.script(MODEL, json_completion("Hi from the fake", model=MODEL))

    def complete() -> str | None:
        with openai.OpenAI(base_url=gateway.base_url, api_key=CLIENT_KEY, max_retries=0) as c:
            return (
                c.chat.completions.create(model=MODEL, messages=MESSAGES).choices[0].message.content
            )

    assert await asyncio.to_thread(complete) == "Hi from the fake"


async def test_models_list_names_exactly_the_routed_models(sdk: openai.AsyncOpenAI) -> None:
    page = await sdk.models.list()

    assert [model.id async for model in page] == [MODEL, "other-model"]
    assert all(model.object == "model" for model in page.data)


async def test_models_list_of_default_gateway_is_the_mock_models(
    start_gateway: StartGateway,
) -> None:
    gw = await start_gateway()

    assert await asyncio.to_thread(_sync_model_ids, gw.base_url) == list(MOCK_MODELS)


def _sync_model_ids(base_url: str) -> list[str]:
    with openai.OpenAI(base_url=base_url, api_key=CLIENT_KEY, max_retries=0) as client:
        return [model.id for model in client.models.list()]
