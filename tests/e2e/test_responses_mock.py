"""`POST /v1/responses` from the built-in mock, with the official `openai` SDK: the mock speaks
the Responses API fully (its event sequence, `sequence_number`s, usage in `response.completed`)
and its misbehaving models misbehave here too - a cut, a reset, an oversized event or a stall
raises `openai.APIError` and never completes; its error models raise the status-specific SDK
exception (the fake-upstream cases are in `test_responses.py`, whose helpers this module uses).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.conftest import StartGateway
from tests.e2e.test_responses import (
    FAST_MOCK,
    INPUT,
    MOCK_ANSWER,
    assert_cut_raises_api_error,
    kinds,
    stream_events,
    text_of,
)
from tests.observability.scrape import finished, value


@pytest.fixture
async def mock_sdk(start_gateway: StartGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    gw = await start_gateway(upstreams=FAST_MOCK)
    async with openai.AsyncOpenAI(base_url=gw.base_url, api_key="x", max_retries=0) as c:
        yield c


# --- the built-in mock -------------------------------------------------------------------------


async def test_mock_create_returns_a_completed_response(mock_sdk: openai.AsyncOpenAI) -> None:
    response = await mock_sdk.responses.create(model="mock", input=INPUT)

    assert response.status == "completed"
    assert response.output_text == MOCK_ANSWER
    assert response.usage is not None
    assert response.usage.output_tokens == len(MOCK_ANSWER.split())


async def test_mock_echoes_the_last_user_item_of_an_input_list(
    mock_sdk: openai.AsyncOpenAI,
) -> None:
    items: Any = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "input_text", "text": "hi there"}]},
    ]
    response = await mock_sdk.responses.create(model="mock", input=items)
    assert response.output_text == MOCK_ANSWER


@pytest.mark.parametrize("model", ["mock", "mock-slow", "mock-garbage"])
async def test_mock_streams_complete_with_the_whole_answer(
    start_gateway: StartGateway, model: str
) -> None:
    gw = await start_gateway(
        upstreams={"mock": {"kind": "mock", "mock": {"chunk_delay": 0, "slow_chunk_delay": 0.001}}}
    )
    async with openai.AsyncOpenAI(base_url=gw.base_url, api_key="x", max_retries=0) as sdk:
        events = await stream_events(sdk, model)
        async with sdk.responses.stream(model=model, input=INPUT) as stream:
            final = await stream.get_final_response()

    assert text_of(events) == MOCK_ANSWER
    assert kinds(events)[-1] == "response.completed"
    assert final.output_text == MOCK_ANSWER
    assert final.status == "completed"


@pytest.mark.parametrize(
    ("model", "code", "headers"),
    [
        ("mock-cut", "upstream_truncated", {}),
        ("mock-reset", "connection_reset", {}),
        ("mock-huge", "event_too_large", {}),
        ("mock-stall", "idle_timeout", {"x-gateway-idle-timeout": "0.2"}),
        # The mock never finishes an answer without `response.completed` (mock-no-done
        # leaves out the terminal event: a cut in this API).
        ("mock-no-done", "upstream_truncated", {}),
    ],
)
async def test_mock_failures_mid_stream_raise_api_error_and_never_complete(
    mock_sdk: openai.AsyncOpenAI, model: str, code: str, headers: dict[str, str]
) -> None:
    await assert_cut_raises_api_error(mock_sdk, model, code, headers)


@pytest.mark.parametrize(
    ("model", "exception", "status_code", "code"),
    [
        ("mock-429", openai.RateLimitError, 429, "upstream_rate_limited"),
        ("mock-500", openai.InternalServerError, 502, "upstream_status_5xx"),
        ("mock-401", openai.InternalServerError, 502, "upstream_auth_failed"),
        ("mock-400", openai.BadRequestError, 400, "context_length_exceeded"),
    ],
)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_mock_errors_raise_the_status_specific_sdk_exception(
    mock_sdk: openai.AsyncOpenAI,
    model: str,
    exception: type[openai.APIStatusError],
    status_code: int,
    code: str,
    stream: bool,
) -> None:
    with pytest.raises(exception) as raised:
        await mock_sdk.responses.create(model=model, input=INPUT, stream=stream)

    assert raised.value.status_code == status_code
    assert raised.value.code == code


async def test_mock_silent_past_the_first_byte_deadline_is_a_504(
    mock_sdk: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        await mock_sdk.responses.create(
            model="mock-silent",
            input=INPUT,
            stream=True,
            extra_headers={"x-gateway-first-byte-timeout": "0.2"},
        )
    assert (raised.value.status_code, raised.value.code) == (504, "first_byte_timeout")


async def test_tokens_of_a_mock_responses_stream_are_counted(start_gateway: StartGateway) -> None:
    gw = await start_gateway(upstreams=FAST_MOCK)
    async with openai.AsyncOpenAI(base_url=gw.base_url, api_key="x", max_retries=0) as sdk:
        events = await stream_events(sdk, "mock")

    usage = events[-1].response.usage
    await finished(gw)
    assert (
        value(gw, "gateway_tokens_total", route="mock", upstream="mock", kind="input")
        == usage.input_tokens
    )
    assert (
        value(gw, "gateway_tokens_total", route="mock", upstream="mock", kind="output")
        == usage.output_tokens
    )
    assert usage.output_tokens == len(MOCK_ANSWER.split())
