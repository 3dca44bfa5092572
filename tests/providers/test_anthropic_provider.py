"""The `anthropic` provider against the fake upstream: what it sends, and how it reads Anthropic's
error answers. (The behaviours every provider shares are in test_provider_contract.py.)

- The call goes to `{base_url}/v1/messages` with the body byte-exact, the configured key as
  `x-api-key` (or Bearer, with `auth_scheme: bearer`), `anthropic-version` from the settings
  unless the endpoint passed the client's on, and never a forwarded header over the key.
- Anthropic's error bodies and statuses: 400 keeps the provider's message, 529 is an overloaded
  server error, `retry-after` is kept.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.apis import ANTHROPIC_COUNT_TOKENS, ANTHROPIC_MESSAGES, OPENAI_CHAT
from gateway.errors import (
    GatewayError,
    UpstreamBadRequest,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamServerError,
)
from gateway.providers import PROVIDER_KINDS, Provider, UpstreamRequest
from gateway.settings import LimitSettings, UpstreamSettings
from gateway.streaming import Context, Timeouts
from tests.conftest import UPSTREAM_KEY
from tests.support import anthropic_wire as claude
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream, UpstreamCall

AUTH_HEADERS = ("authorization", "x-api-key", "proxy-authorization", "cookie")
BODY = b'{"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "h\xc3\xa9"}]}'


def anthropic(upstream: FakeUpstream, **settings: Any) -> Provider:
    values = {"base_url": f"http://127.0.0.1:{upstream.port}/", "api_key": UPSTREAM_KEY, **settings}
    return PROVIDER_KINDS["anthropic"](
        "claude", UpstreamSettings(kind="anthropic", **values), LimitSettings()
    )


@pytest.fixture
async def provider(upstream: FakeUpstream) -> AsyncIterator[Provider]:
    subject = anthropic(upstream)
    await subject.start()
    yield subject
    await subject.aclose()


def request(
    *, stream: bool = True, headers: dict[str, str] | None = None, request_id: str = ""
) -> UpstreamRequest:
    return UpstreamRequest(
        path="/v1/messages",
        body=BODY,
        model="m",
        stream=stream,
        timeouts=Timeouts(),
        api=ANTHROPIC_MESSAGES,
        request_id=request_id,
        headers=headers or {},
    )


async def send(provider: Provider, call: UpstreamRequest) -> None:
    """Open `call` and read its body to the end."""
    ctx = Context.with_timeout(10)
    try:
        response = await provider.open(ctx, call)
        try:
            async for _ in response.chunks():
                pass
        finally:
            await response.aclose()
    finally:
        ctx.close()


async def received(
    upstream: FakeUpstream, provider: Provider, call: UpstreamRequest
) -> UpstreamCall:
    upstream.script("m", fake.sse_stream(claude.anthropic_events(["ok"]), done=False))
    await send(provider, call)
    return await upstream.next_call()


def auth_of(call: UpstreamCall) -> list[tuple[str, str]]:
    return [(k.lower(), v) for k, v in call.headers.items() if k.lower() in AUTH_HEADERS]


async def error_of(
    upstream: FakeUpstream, provider: Provider, behaviour: fake.Behaviour
) -> GatewayError:
    upstream.script("m", behaviour)
    with pytest.raises(GatewayError) as caught:
        await send(provider, request())
    return caught.value


# --- what is sent ------------------------------------------------------------------------------


def test_anthropic_speaks_the_anthropic_apis_only(upstream: FakeUpstream) -> None:
    subject = anthropic(upstream)
    assert subject.apis == (ANTHROPIC_MESSAGES, ANTHROPIC_COUNT_TOKENS)
    assert not subject.speaks(OPENAI_CHAT)


async def test_the_body_goes_byte_exact_to_v1_messages_under_the_base_url(
    upstream: FakeUpstream, provider: Provider
) -> None:
    call = await received(upstream, provider, request(request_id="req-7"))

    assert (call.method, call.path, call.raw_body) == ("POST", "/v1/messages", BODY)
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["Accept"] == "text/event-stream"
    assert call.headers["Accept-Encoding"] == "identity"
    assert call.headers["X-Request-Id"] == "req-7"


async def test_the_configured_key_is_sent_as_x_api_key_with_the_configured_version(
    upstream: FakeUpstream, provider: Provider
) -> None:
    call = await received(upstream, provider, request())

    assert auth_of(call) == [("x-api-key", UPSTREAM_KEY)]
    assert call.headers["anthropic-version"] == "2023-06-01"


async def test_forwarded_headers_are_sent_but_never_over_the_key(
    upstream: FakeUpstream, provider: Provider
) -> None:
    forwarded = {
        "anthropic-version": "2024-10-22",
        "anthropic-beta": "tools-2024-04-04",
        "x-api-key": "sk-forged-0123456789",
    }
    call = await received(upstream, provider, request(headers=forwarded))

    assert auth_of(call) == [("x-api-key", UPSTREAM_KEY)]
    assert call.headers["anthropic-version"] == "2024-10-22"
    assert call.headers["anthropic-beta"] == "tools-2024-04-04"
    assert list(call.headers).count("anthropic-version") == 1


@pytest.mark.parametrize(
    ("kind", "settings", "expected"),
    [
        ("anthropic", {"auth_scheme": "bearer"}, [("authorization", f"Bearer {UPSTREAM_KEY}")]),
        ("anthropic", {"api_key": None}, []),
        ("openai", {"auth_scheme": "x-api-key"}, [("x-api-key", UPSTREAM_KEY)]),
        ("openai", {}, [("authorization", f"Bearer {UPSTREAM_KEY}")]),
    ],
    ids=["anthropic-bearer", "anthropic-no-key", "openai-x-api-key", "openai-default"],
)
async def test_auth_scheme_says_how_the_key_is_sent(
    upstream: FakeUpstream, kind: str, settings: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    values = {"base_url": upstream.base_url, "api_key": UPSTREAM_KEY, **settings}
    subject = PROVIDER_KINDS[kind]("p", UpstreamSettings(kind=kind, **values), LimitSettings())
    await subject.start()
    try:
        call = await received(upstream, subject, request())
    finally:
        await subject.aclose()

    assert auth_of(call) == expected


async def test_the_configured_anthropic_version_is_sent(upstream: FakeUpstream) -> None:
    subject = anthropic(upstream, anthropic_version="2025-02-19")
    await subject.start()
    try:
        call = await received(upstream, subject, request())
    finally:
        await subject.aclose()

    assert call.headers["anthropic-version"] == "2025-02-19"


# --- Anthropic's error answers -----------------------------------------------------------------


async def test_400_keeps_the_message_of_anthropics_error_body(
    upstream: FakeUpstream, provider: Provider
) -> None:
    body = claude.anthropic_error("invalid_request_error", "max_tokens: 99999 > 8192, the maximum")
    error = await error_of(upstream, provider, fake.status(400, body=body))

    assert isinstance(error, UpstreamBadRequest)
    assert error.message == "max_tokens: 99999 > 8192, the maximum"
    assert error.upstream_code is None


async def test_529_is_a_retryable_server_error_named_overloaded(
    upstream: FakeUpstream, provider: Provider
) -> None:
    body = claude.anthropic_error("overloaded_error", "Overloaded")
    error = await error_of(upstream, provider, fake.status(529, body=body))

    assert type(error) is UpstreamServerError
    assert (error.http_status, error.retryable) == (502, True)
    assert error.message == "the upstream is overloaded"


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [({"retry-after": "12"}, "12"), ({"retry-after-ms": "1500"}, "2"), ({}, None)],
    ids=["retry-after", "retry-after-ms", "none"],
)
async def test_429_keeps_the_retry_hint(
    upstream: FakeUpstream, provider: Provider, headers: dict[str, str], retry_after: str | None
) -> None:
    body = claude.anthropic_error("rate_limit_error", "Number of request tokens has exceeded")
    error = await error_of(upstream, provider, fake.status(429, body=body, headers=headers))

    assert isinstance(error, UpstreamRateLimited)
    assert error.retry_after == retry_after


async def test_a_json_answer_to_a_streaming_request_is_a_protocol_error(
    upstream: FakeUpstream, provider: Provider
) -> None:
    error = await error_of(upstream, provider, fake.status(200, body=claude.anthropic_message()))

    assert isinstance(error, UpstreamProtocolError)
    assert "application/json" in error.message


async def test_a_json_answer_to_a_json_request_is_read_whole(
    upstream: FakeUpstream, provider: Provider
) -> None:
    answer = claude.anthropic_message("fine")
    upstream.script("m", fake.status(200, body=answer))
    ctx = Context.with_timeout(10)
    try:
        response = await provider.open(ctx, request(stream=False))
        try:
            body = b"".join([chunk async for chunk in response.chunks()])
        finally:
            await response.aclose()
    finally:
        ctx.close()

    assert json.loads(body) == json.loads(answer)
    assert (await upstream.next_call()).headers["Accept"] == "application/json"
