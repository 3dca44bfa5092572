"""Azure OpenAI (`kind: azure`) as the official openai SDK sees it through the gateway.

The fake upstream answers as an Azure resource (`tests.support.azure_wire`): deployment URLs
with `api-version` or the v1 API, Azure's additions to the chunks, its content-filter 400 and
its mid-stream filter. What is checked on the upstream side: the URL the gateway built, the
`api-key` header it sent (the SDK's own key never passes), and that the key is never in a log
line or the metrics.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from structlog.testing import capture_logs

from gateway.server.app_state import METRICS
from tests.conftest import RunningGateway, StartGateway
from tests.support import azure_wire as azure
from tests.support import fake_upstream as fake
from tests.support import responses_wire as responses
from tests.support.fake_upstream import FakeUpstream

AZURE_KEY = "azure-key-canary-51c0ffee9d2b"
DEPLOYMENT = "gpt4o-eastus"
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
WORDS = ["Hello", " from", " Azure."]


def azure_settings(upstream: FakeUpstream, **fields: Any) -> dict[str, Any]:
    return {
        "upstreams": {
            "azure": {
                "kind": "azure",
                "base_url": upstream.endpoint,
                "api_key": AZURE_KEY,
                "api_version": "2024-10-21",
                **fields,
            }
        },
        "routes": [
            {"model": "gpt-4o", "targets": [{"upstream": "azure", "model": DEPLOYMENT}]},
            {"model": "embed", "targets": [{"upstream": "azure", "model": "embed-small"}]},
        ],
        "heartbeat": None,
    }


@pytest.fixture
async def sdk_for(
    start_gateway: StartGateway,
) -> AsyncIterator[Any]:
    clients: list[openai.AsyncOpenAI] = []

    async def make(upstream: FakeUpstream, **fields: Any) -> tuple[openai.AsyncOpenAI, Any]:
        gateway = await start_gateway(None, **azure_settings(upstream, **fields))
        client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key="client-key", max_retries=0)
        clients.append(client)
        return client, gateway

    yield make
    for client in clients:
        await client.close()


async def chat_text(sdk: openai.AsyncOpenAI) -> tuple[str, list[Any]]:
    stream = await sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    text, chunks = [], []
    async for chunk in stream:
        chunks.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
    return "".join(text), chunks


def exposition(gateway: RunningGateway) -> str:
    return gateway.app[METRICS].exposition()[0].decode()


async def test_a_chat_stream_goes_to_the_deployment_url_with_api_version_and_api_key(
    upstream: FakeUpstream, sdk_for: Any
) -> None:
    upstream.script(DEPLOYMENT, fake.sse_stream(azure.stream_chunks(WORDS), done=False))
    sdk, gateway = await sdk_for(upstream)

    with capture_logs() as logs:
        text, chunks = await chat_text(sdk)

    assert text == "".join(WORDS)
    (call,) = upstream.requests
    assert call.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert call.query == "api-version=2024-10-21"
    assert call.headers["api-key"] == AZURE_KEY
    assert "Authorization" not in call.headers  # neither the client's key nor a bearer
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert AZURE_KEY not in repr(logs)
    assert AZURE_KEY not in exposition(gateway)


async def test_a_whole_chat_answer_comes_back_from_the_deployment(
    upstream: FakeUpstream, sdk_for: Any
) -> None:
    upstream.script(DEPLOYMENT, fake.json_completion("Hi there.", model="gpt-4o-2024-08-06"))
    sdk, _ = await sdk_for(upstream)

    completion = await sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    assert completion.choices[0].message.content == "Hi there."
    assert upstream.requests[0].path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"


async def test_the_v1_api_has_no_api_version_and_the_deployment_in_the_body(
    upstream: FakeUpstream, sdk_for: Any
) -> None:
    upstream.script(DEPLOYMENT, fake.sse_stream(azure.stream_chunks(WORDS), done=False))
    sdk, _ = await sdk_for(upstream, api_version="v1")

    text, _ = await chat_text(sdk)

    assert text == "".join(WORDS)
    (call,) = upstream.requests
    assert (call.path, call.query) == ("/openai/v1/chat/completions", "")
    assert call.body["model"] == DEPLOYMENT
    assert call.headers["api-key"] == AZURE_KEY


async def test_a_bearer_token_is_sent_as_authorization_when_configured(
    upstream: FakeUpstream, sdk_for: Any
) -> None:
    upstream.script(DEPLOYMENT, fake.sse_stream(azure.stream_chunks(WORDS), done=False))
    sdk, _ = await sdk_for(upstream, auth_scheme="bearer")

    await chat_text(sdk)

    (call,) = upstream.requests
    assert call.headers["Authorization"] == f"Bearer {AZURE_KEY}"
    assert "api-key" not in call.headers


async def test_responses_go_to_the_resources_responses_url(
    upstream: FakeUpstream, sdk_for: Any
) -> None:
    events = responses.responses_events(["Hel", "lo"], model=DEPLOYMENT)
    upstream.script(DEPLOYMENT, fake.sse_stream(events, done=False))
    sdk, _ = await sdk_for(upstream, api_version="2025-04-01-preview")

    async with sdk.responses.stream(model="gpt-4o", input="hi") as stream:
        final = await stream.get_final_response()

    assert final.output_text == "Hello"
    (call,) = upstream.requests
    assert (call.path, call.query) == ("/openai/responses", "api-version=2025-04-01-preview")
    assert call.body["model"] == DEPLOYMENT


async def test_embeddings_go_to_the_deployments_embeddings_url(
    upstream: FakeUpstream, sdk_for: Any
) -> None:
    upstream.script("embed-small", fake.status(200, body=azure.embeddings([[0.5, -0.25]])))
    sdk, _ = await sdk_for(upstream)

    answer = await sdk.embeddings.create(model="embed", input="hi")

    assert answer.data[0].embedding == [0.5, -0.25]
    (call,) = upstream.requests
    assert call.path == "/openai/deployments/embed-small/embeddings"
    assert call.query == "api-version=2024-10-21"


async def test_a_prompt_refused_by_the_content_filter_is_a_400_naming_the_categories(
    upstream: FakeUpstream, sdk_for: Any
) -> None:
    upstream.script(DEPLOYMENT, fake.status(400, body=azure.content_filter_error()))
    sdk, _ = await sdk_for(upstream)

    with pytest.raises(openai.BadRequestError) as raised:
        await sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)

    error = raised.value
    assert error.status_code == 400
    assert error.code == "content_filter"
    assert error.param == "prompt"
    body = error.body
    assert isinstance(body, dict)
    assert "content filter" in body["message"]
    assert "hate (high)" in body["message"]
    assert "violence (medium)" in body["message"]
    assert "self_harm" not in body["message"]  # did not fire
    assert "http" not in body["message"]  # no upstream URL
    assert len(upstream.requests) == 1  # the client's fault: neither retried nor failed over


async def test_a_stream_stopped_by_the_output_filter_is_relayed_as_azure_sent_it(
    upstream: FakeUpstream, sdk_for: Any
) -> None:
    chunks = azure.filtered_chunks(["Once", " upon"])
    upstream.script(DEPLOYMENT, fake.sse_stream(chunks, done=False))
    sdk, _ = await sdk_for(upstream)

    text, received = await chat_text(sdk)

    assert text == "Once upon"
    last = received[-1].choices[0]
    assert last.finish_reason == "content_filter"
    results = last.model_dump()["content_filter_results"]
    assert results["violence"] == {"filtered": True, "severity": "medium"}
    assert received[0].model_dump()["prompt_filter_results"][0]["prompt_index"] == 0


async def test_the_raw_stream_is_byte_exact(upstream: FakeUpstream, sdk_for: Any) -> None:
    chunks = azure.filtered_chunks(["Once"])
    upstream.script(DEPLOYMENT, fake.sse_stream(chunks, done=False))
    sdk, _ = await sdk_for(upstream)

    raw = await sdk.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    )
    body = await raw.http_response.aread()

    assert body == b"".join(chunks)
    assert json.loads(chunks[-2].removeprefix(b"data: "))["choices"][0]["finish_reason"] == (
        "content_filter"
    )
