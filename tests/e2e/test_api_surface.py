"""The rest of the API surface, with the real SDKs: embeddings, legacy completions, token
counting, one model, every path without `/v1`, unknown paths and non-JSON bodies
(contract section 1).

- `/v1/embeddings` and `/v1/messages/count_tokens` are relayed byte-exact to the upstream's
  `/embeddings` and `/v1/messages/count_tokens`, and the mock answers them deterministically
  (vectors of the requested `dimensions`, float or base64; a token count);
- `/v1/completions` streams `text_completion` chunks to the `openai` SDK, and a cut one raises;
- an SDK given the gateway's root as its base URL (no `/v1`) works, and those paths pass the
  same admission (a gateway key is required there too);
- an unknown path is a 404 naming it and the endpoints served, in the path's dialect;
- an API request whose body is not `application/json` is 415 and reaches no upstream.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import UPSTREAM_KEY, RunningGateway, StartGateway
from tests.support import fake_upstream as fake
from tests.support.anthropic_gateway import CLAUDE, anthropic_routes
from tests.support.fake_upstream import FakeUpstream

MODEL = "fake-model"
CLIENT_KEY = "client-key"
FAST_MOCK = {"mock": {"kind": "mock", "mock": {"chunk_delay": 0}}}
MOCK_ROUTES = {
    "upstreams": FAST_MOCK,
    "routes": [
        {"model": "mock", "targets": [{"upstream": "mock"}]},
        {"model": "mock-*", "targets": [{"upstream": "mock"}]},
    ],
}


def openai_client(gateway: RunningGateway, base_url: str | None = None) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=base_url or gateway.base_url, api_key=CLIENT_KEY, max_retries=0
    )


# --- embeddings ----------------------------------------------------------------------------------


async def test_mock_embeddings_are_deterministic_unit_vectors_of_the_requested_dimensions(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(None, **MOCK_ROUTES)
    async with openai_client(gateway) as sdk:
        first = await sdk.embeddings.create(model="mock", input=["alpha", "beta"], dimensions=12)
        again = await sdk.embeddings.create(
            model="mock", input=["alpha"], dimensions=12, encoding_format="float"
        )
    vectors = [item.embedding for item in first.data]
    assert [len(v) for v in vectors] == [12, 12]
    assert vectors[0] != vectors[1]
    # The SDK asks for base64 by default: the same vector, as float32.
    assert vectors[0] == pytest.approx(again.data[0].embedding, abs=1e-6)
    assert all(abs(sum(x * x for x in v) - 1.0) < 1e-4 for v in vectors)
    assert first.usage.prompt_tokens == 2


async def test_base64_embeddings_are_float32_little_endian(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(None, **MOCK_ROUTES)
    body = {"model": "mock", "input": "x", "dimensions": 4}
    async with client.post(f"{gateway.base_url}/embeddings", json=body) as floats:
        vector = (await floats.json())["data"][0]["embedding"]
    async with client.post(
        f"{gateway.base_url}/embeddings", json={**body, "encoding_format": "base64"}
    ) as packed:
        encoded = (await packed.json())["data"][0]["embedding"]
    decoded = struct.unpack("<4f", base64.b64decode(encoded))
    assert decoded == pytest.approx(vector, abs=1e-6)


async def test_embeddings_go_byte_exact_to_the_upstreams_embeddings_path(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    answer = {"object": "list", "data": [{"object": "embedding", "index": 0,
              "embedding": [0.5, -0.25]}], "model": MODEL,
              "usage": {"prompt_tokens": 3, "total_tokens": 3}}  # fmt: skip
    raw = json.dumps(answer, indent=1).encode()
    upstream.script(MODEL, fake.status(200, body=raw))
    gateway = await start_gateway(upstream, models=(MODEL,))
    async with openai_client(gateway) as sdk:
        result = await sdk.embeddings.with_raw_response.create(
            model=MODEL, input="hi", encoding_format="float"
        )
    assert result.http_response.content == raw
    (call,) = upstream.requests
    assert (call.path, call.body["input"]) == ("/v1/embeddings", "hi")
    assert call.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"


async def test_a_streaming_embeddings_request_is_400_naming_the_field(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(None, **MOCK_ROUTES)
    body = {"model": "mock", "input": "x", "stream": True}
    async with client.post(f"{gateway.base_url}/embeddings", json=body) as answer:
        assert answer.status == 400
        error = (await answer.json())["error"]
    assert "stream" in error["message"]
    assert error["code"] == "invalid_request"


# --- legacy completions --------------------------------------------------------------------------


async def test_completions_stream_to_the_sdk_and_a_cut_one_raises(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(None, **MOCK_ROUTES)
    async with openai_client(gateway) as sdk:
        stream = await sdk.completions.create(model="mock", prompt="say hi", stream=True)
        text = "".join([chunk.choices[0].text async for chunk in stream])
        whole = await sdk.completions.create(model="mock", prompt="say hi")
        cut = await sdk.completions.create(model="mock-cut", prompt="say hi", stream=True)
        with pytest.raises(openai.APIError, match="before the answer was complete"):
            async for _ in cut:
                pass
    assert text == whole.choices[0].text
    assert text.endswith("You said: say hi")
    assert whole.usage is not None
    assert whole.usage.completion_tokens == len(text.split())


# --- Anthropic token counting --------------------------------------------------------------------


async def test_count_tokens_reaches_the_anthropic_upstream_and_the_mock_counts(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    upstream.script(CLAUDE, fake.status(200, body={"input_tokens": 42}))
    gateway = await start_gateway(None, **anthropic_routes(upstream))
    messages: list[Any] = [{"role": "user", "content": "one two three"}]
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0
    ) as sdk:
        counted = await sdk.messages.count_tokens(model=CLAUDE, messages=messages)
        mocked = await sdk.messages.count_tokens(model="mock", messages=messages, system="be brief")
    assert counted.input_tokens == 42
    assert mocked.input_tokens == 2 + 1 + 3  # system words, then one per message and its words
    (call,) = upstream.requests
    assert call.path == "/v1/messages/count_tokens"
    assert call.headers["x-api-key"] == UPSTREAM_KEY


# --- models --------------------------------------------------------------------------------------


async def test_one_model_is_retrieved_in_each_sdks_shape_and_an_unrouted_one_is_404(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(None, **MOCK_ROUTES)
    async with openai_client(gateway) as sdk:
        model = await sdk.models.retrieve("mock-slow")  # matched by the route's pattern
        with pytest.raises(openai.NotFoundError):
            await sdk.models.retrieve("gpt-unrouted")
    assert (model.id, model.object) == ("mock-slow", "model")
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0
    ) as claude:
        info = await claude.models.retrieve("mock")
        with pytest.raises(anthropic.NotFoundError):
            await claude.models.retrieve("claude-unrouted")
    assert (info.id, info.type) == ("mock", "model")


# --- paths without /v1 ---------------------------------------------------------------------------


async def test_an_sdk_pointed_at_the_root_without_v1_is_served(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(None, **MOCK_ROUTES)
    async with openai_client(gateway, base_url=gateway.url) as sdk:
        stream = await sdk.chat.completions.create(
            model="mock", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        listed = await sdk.models.list()
    assert text.endswith("You said: hi")
    assert [m.id for m in listed.data] == ["mock"]  # names only: patterns are not names


async def test_paths_without_v1_need_a_gateway_key_like_the_others(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(None, **MOCK_ROUTES, auth={"keys": ["gw-key-0123456789abcdef"]})
    body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
    for path in ("/chat/completions", "/v1/chat/completions", "/models"):
        method = client.get if path == "/models" else client.post
        async with method(f"{gateway.url}{path}", json=body) as refused:
            assert refused.status == 401, path
    headers = {"Authorization": "Bearer gw-key-0123456789abcdef"}
    async with client.post(f"{gateway.url}/chat/completions", json=body, headers=headers) as ok:
        assert ok.status == 200


# --- unknown paths and non-JSON bodies -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "shape"),
    [("/v1/audio/speech", "openai"), ("/nope", "openai"), ("/v1/messages/batches", "anthropic")],
)
async def test_an_unknown_path_is_404_naming_it_and_the_endpoints_served(
    start_gateway: StartGateway, client: aiohttp.ClientSession, path: str, shape: str
) -> None:
    gateway = await start_gateway(None, **MOCK_ROUTES)
    async with client.post(f"{gateway.url}{path}", json={"model": "mock"}) as answer:
        assert answer.status == 404
        payload = await answer.json()
    if shape == "anthropic":
        assert (payload["type"], payload["error"]["type"]) == ("error", "not_found_error")
        message = payload["error"]["message"]
    else:
        assert payload["error"]["code"] == "unsupported_endpoint"
        message = payload["error"]["message"]
    assert f"POST {path} is not an endpoint" in message
    for served in ("POST /v1/chat/completions", "POST /v1/responses", "POST /v1/embeddings",
                   "POST /v1/messages/count_tokens", "GET /v1/models/{id}"):  # fmt: skip
        assert served in message


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_an_api_body_that_is_not_json_is_415_and_reaches_no_upstream(
    upstream: FakeUpstream,
    start_gateway: StartGateway,
    client: aiohttp.ClientSession,
    content_type: str | None,
) -> None:
    gateway = await start_gateway(upstream, models=(MODEL,))
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    headers = {"Content-Type": content_type} if content_type else {}
    async with client.post(
        f"{gateway.base_url}/chat/completions", data=body.encode(), headers=headers
    ) as answer:
        assert answer.status == 415
        error = (await answer.json())["error"]
    assert error["code"] == "unsupported_media_type"
    assert upstream.requests == []


async def test_json_with_a_charset_parameter_is_accepted(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(None, **MOCK_ROUTES)
    body = json.dumps({"model": "mock", "messages": [{"role": "user", "content": "hi"}]})
    headers = {"Content-Type": "application/json; charset=utf-8"}
    async with client.post(
        f"{gateway.base_url}/chat/completions", data=body.encode(), headers=headers
    ) as answer:
        assert answer.status == 200


# --- SDK-native headers (contract section 4) -----------------------------------------------------


@pytest.mark.parametrize(
    ("model", "path", "should_retry"),
    [
        ("mock-400", "/v1/chat/completions", "false"),  # the request itself: same again fails
        ("mock-401", "/v1/chat/completions", "false"),  # the gateway's credentials upstream
        ("mock", "/v1/audio/speech", "false"),  # an endpoint not served
        ("mock-429", "/v1/chat/completions", "true"),
        ("mock-500", "/v1/chat/completions", None),  # the SDK's own policy decides
    ],
)
async def test_error_answers_say_whether_a_retry_can_mend_them(
    start_gateway: StartGateway,
    client: aiohttp.ClientSession,
    model: str,
    path: str,
    should_retry: str | None,
) -> None:
    gateway = await start_gateway(None, **MOCK_ROUTES)
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with client.post(f"{gateway.url}{path}", json=body) as answer:
        assert answer.status >= 400
        assert answer.headers.get("x-should-retry") == should_retry
        assert answer.headers["request-id"] == answer.headers["x-request-id"]


async def test_every_answer_carries_request_id_the_clients_when_sane(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(None, **MOCK_ROUTES)
    body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    headers = {"x-request-id": "req-abc.123"}
    async with client.post(
        f"{gateway.base_url}/chat/completions", json=body, headers=headers
    ) as stream:
        await stream.read()
        assert stream.headers["request-id"] == stream.headers["x-request-id"] == "req-abc.123"
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0
    ) as claude:
        with pytest.raises(anthropic.NotFoundError) as raised:
            await claude.messages.create(
                model="unrouted", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
    assert raised.value.request_id  # the anthropic SDK reads `request-id`
