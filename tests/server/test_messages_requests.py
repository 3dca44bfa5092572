"""`POST /v1/messages` at the edge: what is checked, what goes upstream, and in which dialect
every refusal is answered.

- The body is validated (`model`, non-empty `messages`, `max_tokens`, boolean `stream`) before
  anything goes upstream; other fields are forwarded untouched, with the target's model name.
- Upstream, the gateway's key is sent (`x-api-key`, or Bearer when configured), never the
  client's; `anthropic-version` is the client's when sane, else the configured one;
  `anthropic-beta` is passed on.
- A model whose upstream speaks another API is translated where the gateway can (Chat
  Completions, Messages, Responses: `tests/e2e/test_translation.py`); where it cannot (token
  counting, embeddings) it is refused with 400 in the endpoint's dialect.
- Refusals that never reach the handler (unknown path, wrong method, draining) are Anthropic
  errors under `/v1/messages` too.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from gateway.server.lifecycle import LIFECYCLE
from tests.conftest import UPSTREAM_KEY, StartGateway
from tests.support import anthropic_wire as claude
from tests.support import fake_upstream as fake
from tests.support.anthropic_gateway import (
    CLAUDE,
    GPT,
    MESSAGES,
    anthropic_routes,
    messages_body,
)
from tests.support.fake_upstream import FakeUpstream

CLIENT_KEY = "sk-ant-client-own-key-0123456789"
AUTH_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "api-key", "cookie")


async def post_json(
    client: aiohttp.ClientSession,
    url: str,
    body: Any,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    async with client.post(url, data=data, headers=all_headers) as response:
        return response.status, dict(response.headers), json.loads(await response.read())


def anthropic_error_of(payload: Any) -> dict[str, str]:
    assert payload["type"] == "error"
    assert set(payload["error"]) == {"type", "message"}
    error: dict[str, str] = payload["error"]
    return error


async def upstream_headers(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    headers: dict[str, str],
    **claude_settings: Any,
) -> dict[str, str]:
    """The headers the upstream received for one Messages request sent with `headers`."""
    upstream.script(CLAUDE, fake.sse_stream(claude.anthropic_events(["ok"]), done=False))
    gw = await start_gateway(None, **anthropic_routes(upstream, **claude_settings))
    async with client.post(
        f"{gw.url}/v1/messages", json=messages_body(), headers=headers
    ) as response:
        assert response.status == 200
        await response.read()
    call = await upstream.next_call()
    assert (call.method, call.path) == ("POST", "/v1/messages")
    return {name.lower(): value for name, value in call.headers.items()}


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"model": CLAUDE, "messages": MESSAGES}, "max_tokens"),
        ({"model": CLAUDE, "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"model": CLAUDE, "messages": MESSAGES, "max_tokens": "64"}, "max_tokens"),
        ({"model": CLAUDE, "messages": MESSAGES, "max_tokens": True}, "max_tokens"),
        ({"model": CLAUDE, "messages": [], "max_tokens": 8}, "messages"),
        ({"messages": MESSAGES, "max_tokens": 8}, "model"),
        ({"model": CLAUDE, "messages": MESSAGES, "max_tokens": 8, "stream": "yes"}, "stream"),
        (b"{not json", "JSON"),
        ([1, 2], "JSON object"),
    ],
    ids=[
        "no-max-tokens",
        "zero-max-tokens",
        "string-max-tokens",
        "bool-max-tokens",
        "no-messages",
        "no-model",
        "string-stream",
        "not-json",
        "not-an-object",
    ],
)
async def test_invalid_request_is_a_400_invalid_request_error_that_never_goes_upstream(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    body: Any,
    where: str,
) -> None:
    gw = await start_gateway(None, **anthropic_routes(upstream))

    status, _, payload = await post_json(client, f"{gw.url}/v1/messages", body)

    assert status == 400
    error = anthropic_error_of(payload)
    assert error["type"] == "invalid_request_error"
    assert where in error["message"]
    assert upstream.requests == []


async def test_unknown_model_is_a_404_not_found_error(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(None, **anthropic_routes(upstream))

    status, _, payload = await post_json(
        client, f"{gw.url}/v1/messages", messages_body("claude-unknown")
    )

    assert status == 404
    assert anthropic_error_of(payload)["type"] == "not_found_error"
    assert "claude-unknown" in anthropic_error_of(payload)["message"]


async def test_body_is_forwarded_untouched_but_for_the_targets_model_name(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("claude-sonnet-4-5", fake.status(200, body=claude.anthropic_message()))
    routes = anthropic_routes(upstream)
    routes["routes"][0]["targets"][0]["model"] = "claude-sonnet-4-5"
    gw = await start_gateway(None, **routes)
    extra = {
        "system": "Be brief. \u00e9",
        "temperature": 0.2,
        "metadata": {"user_id": "u-1"},
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
    }
    body = messages_body(stream=False, **extra)

    status, _, _ = await post_json(client, f"{gw.url}/v1/messages", body)

    assert status == 200
    call = await upstream.next_call()
    assert call.body == {**body, "model": "claude-sonnet-4-5"}


# --- what goes upstream ------------------------------------------------------------------------


async def test_upstream_gets_the_configured_key_as_x_api_key_never_the_clients(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    client_auth = {
        "x-api-key": CLIENT_KEY,
        "Authorization": f"Bearer {CLIENT_KEY}",
        "Cookie": "session=client",
        "Proxy-Authorization": "Basic Y2xpZW50OnNlY3JldA==",
    }
    received = await upstream_headers(start_gateway, upstream, client, client_auth)

    assert [(k, v) for k, v in received.items() if k in AUTH_HEADERS] == [
        ("x-api-key", UPSTREAM_KEY)
    ]
    assert CLIENT_KEY not in repr(received)
    assert received["accept"] == "text/event-stream"
    assert received["content-type"] == "application/json"


async def test_upstream_gets_a_bearer_key_when_configured(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    received = await upstream_headers(
        start_gateway, upstream, client, {"x-api-key": CLIENT_KEY}, auth_scheme="bearer"
    )

    assert [(k, v) for k, v in received.items() if k in AUTH_HEADERS] == [
        ("authorization", f"Bearer {UPSTREAM_KEY}")
    ]


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ({}, "2023-06-01"),
        ({"anthropic-version": "2024-10-22"}, "2024-10-22"),
        ({"anthropic-version": "latest"}, "2023-06-01"),
        ({"anthropic-version": "2023-06-01; x-evil: 1"}, "2023-06-01"),
    ],
    ids=["absent", "sane", "not-a-date", "garbage-suffix"],
)
async def test_anthropic_version_is_the_clients_when_sane_else_the_configured_one(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    sent: dict[str, str],
    expected: str,
) -> None:
    received = await upstream_headers(start_gateway, upstream, client, sent)

    assert received["anthropic-version"] == expected


async def test_configured_anthropic_version_is_sent_when_the_client_sends_none(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    received = await upstream_headers(
        start_gateway, upstream, client, {}, anthropic_version="2025-01-01"
    )

    assert received["anthropic-version"] == "2025-01-01"


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("prompt-caching-2024-07-31", "prompt-caching-2024-07-31"),
        ("a-2024-01-01, b-2024-02-02", "a-2024-01-01, b-2024-02-02"),
        ("no spaces allowed inside", None),
    ],
    ids=["one", "two", "insane"],
)
async def test_anthropic_beta_is_passed_on_when_sane(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    sent: str,
    expected: str | None,
) -> None:
    received = await upstream_headers(start_gateway, upstream, client, {"anthropic-beta": sent})

    assert received.get("anthropic-beta") == expected


# --- the other API's models --------------------------------------------------------------------


async def test_token_counting_for_an_openai_routed_model_is_a_400_in_anthropics_shape(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(None, **anthropic_routes(upstream))
    body = {"model": GPT, "messages": MESSAGES}

    status, _, payload = await post_json(client, f"{gw.url}/v1/messages/count_tokens", body)

    assert status == 400
    error = anthropic_error_of(payload)
    assert error["type"] == "invalid_request_error"
    assert "POST /v1/chat/completions" in error["message"]
    assert "does not translate" in error["message"]
    assert upstream.requests == []


async def test_embeddings_for_an_anthropic_routed_model_is_a_400_in_openais_shape(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(None, **anthropic_routes(upstream))
    body = {"model": CLAUDE, "input": "hello"}

    status, _, payload = await post_json(client, f"{gw.url}/v1/embeddings", body)

    assert status == 400
    assert payload["error"]["type"] == "invalid_request_error"
    assert payload["error"]["code"] == "invalid_request"
    assert "POST /v1/messages" in payload["error"]["message"]
    assert upstream.requests == []


# --- refusals outside the handler --------------------------------------------------------------


async def test_unknown_path_under_messages_is_a_404_not_found_error(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(None, **anthropic_routes(upstream))

    status, _, payload = await post_json(client, f"{gw.url}/v1/messages/batches", {})

    assert status == 404
    assert anthropic_error_of(payload)["type"] == "not_found_error"


async def test_get_on_messages_is_a_405_in_anthropics_shape_with_allow(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(None, **anthropic_routes(upstream))

    async with client.get(f"{gw.url}/v1/messages") as response:
        status, allow, payload = response.status, response.headers["Allow"], await response.json()

    assert (status, allow) == (405, "POST")
    assert anthropic_error_of(payload)["type"] == "invalid_request_error"


async def test_a_request_arriving_while_draining_is_a_retryable_503_overloaded_error(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(None, **anthropic_routes(upstream))
    gw.app[LIFECYCLE].begin_drain()

    status, headers, payload = await post_json(client, f"{gw.url}/v1/messages", messages_body())

    assert (status, headers["Retry-After"]) == (503, "1")
    assert anthropic_error_of(payload)["type"] == "overloaded_error"
    chat = {"model": GPT, "messages": MESSAGES}
    status, _, payload = await post_json(client, f"{gw.url}/v1/chat/completions", chat)
    assert status == 503
    assert payload["error"]["code"] == "server_shutdown"  # OpenAI's shape on its endpoint
    assert upstream.requests == []
