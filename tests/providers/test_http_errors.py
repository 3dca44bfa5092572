"""The HTTP providers' one error boundary (gateway/transport, gateway/providers/http.py).

`translate_errors()` turns every aiohttp/OS exception an upstream call can raise into the
`GatewayError` it stands for, chained to the original, by type only; `GatewayError`s and
`CancelledError` pass through untouched. Error answers are read bounded and classified by status
(with Retry-After kept in a safe form), and whatever upstream text reaches a client goes through
`sanitize_message`: one line, capped, no URLs, keys or the configured secret.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import unicodedata
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.client_reqrep import ConnectionKey
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.apis import OPENAI_CHAT
from gateway.errors import (
    APIError,
    ConnectFailed,
    ConnectionReset,
    ConnectTimeout,
    DeadlineExceeded,
    GatewayError,
    GatewayOverloaded,
    NetworkError,
    RequestTooLarge,
    StreamInterrupted,
    UpstreamAuthFailed,
    UpstreamBadRequest,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTruncated,
)
from gateway.providers import PROVIDER_KINDS, Provider, UpstreamRequest
from gateway.providers.http import sanitize_message
from gateway.redaction import Redactor
from gateway.settings import LimitSettings, UpstreamSettings
from gateway.streaming import Context, Timeouts
from gateway.transport import translate_errors
from tests.conftest import UPSTREAM_KEY
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream, UpstreamCall

HOST = "upstream.invalid"
MiB = 1024 * 1024

# --- translate_errors(): the table -------------------------------------------------------------


def connection_key() -> ConnectionKey:
    return ConnectionKey(
        host=HOST,
        port=443,
        is_ssl=True,
        ssl=True,
        proxy=None,
        proxy_auth=None,
        proxy_headers_hash=None,
    )


def request_info() -> aiohttp.RequestInfo:
    url = URL(f"https://{HOST}/v1/chat/completions")
    return aiohttp.RequestInfo(url, "POST", CIMultiDictProxy(CIMultiDict()), url)


def refused() -> ConnectionRefusedError:
    return ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")


TRANSLATIONS = [
    pytest.param(aiohttp.ConnectionTimeoutError(), ConnectTimeout, id="connection-timeout"),
    pytest.param(aiohttp.SocketTimeoutError(), DeadlineExceeded, id="socket-timeout"),
    pytest.param(aiohttp.ServerTimeoutError(), DeadlineExceeded, id="server-timeout"),
    pytest.param(TimeoutError(), DeadlineExceeded, id="builtin-timeout"),
    pytest.param(
        aiohttp.ClientConnectorError(connection_key(), refused()), ConnectFailed, id="connector"
    ),
    pytest.param(
        aiohttp.ClientConnectorError(
            connection_key(), OSError(errno.EHOSTUNREACH, "No route to host")
        ),
        ConnectFailed,
        id="connector-unreachable",
    ),
    pytest.param(
        aiohttp.ClientConnectorDNSError(
            connection_key(), socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        ),
        ConnectFailed,
        id="connector-dns",
    ),
    pytest.param(aiohttp.ServerDisconnectedError(), ConnectionReset, id="server-disconnected"),
    pytest.param(aiohttp.ClientPayloadError(), UpstreamTruncated, id="payload"),
    pytest.param(
        aiohttp.ClientOSError(errno.ECONNRESET, "x"), ConnectionReset, id="client-os-econnreset"
    ),
    pytest.param(aiohttp.ClientOSError(errno.EPIPE, "x"), ConnectionReset, id="client-os-epipe"),
    pytest.param(
        aiohttp.ClientOSError(errno.EHOSTUNREACH, "x"), NetworkError, id="client-os-unreachable"
    ),
    pytest.param(aiohttp.ClientConnectionResetError(), ConnectionReset, id="connection-reset"),
    pytest.param(aiohttp.ClientConnectionError(), NetworkError, id="client-connection"),
    pytest.param(
        aiohttp.ClientResponseError(request_info(), ()), UpstreamProtocolError, id="response"
    ),
    pytest.param(aiohttp.InvalidURL("x"), StreamInterrupted, id="invalid-url"),
    pytest.param(ConnectionRefusedError(), ConnectFailed, id="connection-refused"),
    pytest.param(ConnectionResetError(), ConnectionReset, id="builtin-connection-reset"),
    pytest.param(OSError(), NetworkError, id="os-error"),
]


@pytest.mark.parametrize(("original", "expected"), TRANSLATIONS)
def test_foreign_error_becomes_its_gateway_error_chained_to_the_original(
    original: BaseException, expected: type[GatewayError]
) -> None:
    with pytest.raises(GatewayError) as caught, translate_errors():
        raise original

    assert type(caught.value) is expected
    assert caught.value.code == expected.code
    assert caught.value.__cause__ is original
    # The gateway's own words: no host, URL or errno text of the original reaches a client.
    assert HOST not in caught.value.message
    assert "Connection refused" not in caught.value.message


@pytest.mark.parametrize(
    "error",
    [UpstreamTruncated(), UpstreamBadRequest("bad", upstream_code="x"), ConnectFailed()],
    ids=lambda error: type(error).__name__,
)
def test_gateway_error_passes_through_untouched(error: GatewayError) -> None:
    with pytest.raises(GatewayError) as caught, translate_errors():
        raise error

    assert caught.value is error
    assert caught.value.__cause__ is None


def test_cancelled_error_passes_through_untouched() -> None:
    cancel = asyncio.CancelledError("stop")
    with pytest.raises(asyncio.CancelledError) as caught, translate_errors():
        raise cancel

    assert caught.value is cancel
    assert caught.value.__cause__ is None


def test_nothing_is_raised_when_nothing_fails() -> None:
    with translate_errors():
        pass


# --- against the fake upstream: a real provider, real sockets ----------------------------------


class _Detached(web.StreamResponse):
    """The behaviour wrote (or closed) the connection itself: aiohttp must write nothing."""

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def raw(data: bytes) -> fake.Behaviour:
    """Write `data` as the whole answer, then close the connection (FIN)."""

    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        transport = request.transport
        assert transport is not None
        transport.write(data)
        transport.close()
        call.cut_by_upstream = True
        return _Detached()

    return behave


def openai_provider(
    upstream: FakeUpstream | str, *, max_error_body_bytes: int = 64 * 1024, max_connections: int = 8
) -> Provider:
    base_url = upstream if isinstance(upstream, str) else upstream.base_url
    settings = UpstreamSettings(
        kind="openai", base_url=base_url, api_key=UPSTREAM_KEY, max_connections=max_connections
    )
    limits = LimitSettings(max_error_body_bytes=max_error_body_bytes)
    return PROVIDER_KINDS["openai"]("fake", settings, limits)


@pytest.fixture
async def provider(upstream: FakeUpstream) -> AsyncIterator[Provider]:
    subject = openai_provider(upstream)
    await subject.start()
    yield subject
    await subject.aclose()


def request(
    model: str, *, stream: bool = True, timeouts: Timeouts | None = None
) -> UpstreamRequest:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return UpstreamRequest(
        path="/chat/completions",
        body=json.dumps(body).encode(),
        model=model,
        stream=stream,
        timeouts=timeouts or Timeouts(),
        api=OPENAI_CHAT,
    )


async def fetch(provider: Provider, model: str, *, stream: bool = True, **kw: Any) -> bytes:
    """Open and read the whole answer; every failure must be a GatewayError."""
    ctx = Context.with_timeout(10)
    try:
        response = await provider.open(ctx, request(model, stream=stream, **kw))
        try:
            return b"".join([chunk async for chunk in response.chunks()])
        finally:
            await response.aclose()
    finally:
        ctx.close()


async def error_of(provider: Provider, model: str, *, stream: bool = True) -> GatewayError:
    try:
        await fetch(provider, model, stream=stream)
    except GatewayError as exc:
        return exc
    raise AssertionError(f"{model}: no error raised")


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        pytest.param(fake.status(401), UpstreamAuthFailed, id="401"),
        pytest.param(fake.status(403), UpstreamAuthFailed, id="403"),
        pytest.param(fake.status(404), UpstreamRejected, id="404"),
        pytest.param(fake.status(405), UpstreamRejected, id="405"),
        pytest.param(fake.status(413), RequestTooLarge, id="413"),
        pytest.param(fake.status(422), UpstreamBadRequest, id="422"),
        pytest.param(fake.status(429), UpstreamRateLimited, id="429"),
        pytest.param(fake.status(500), UpstreamServerError, id="500"),
        pytest.param(fake.html(502), UpstreamServerError, id="502-html"),
        pytest.param(fake.html(503), UpstreamServerError, id="503-html"),
        pytest.param(
            fake.status(529, body=b"upstream-body: overloaded"), UpstreamServerError, id="529-text"
        ),
        pytest.param(raw(b""), ConnectionReset, id="closed-without-answer"),
        pytest.param(raw(b"garbage\r\n\r\n"), UpstreamProtocolError, id="garbage-status-line"),
        pytest.param(
            raw(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"),
            UpstreamProtocolError,
            id="header-too-long",
        ),
        pytest.param(
            raw(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n"),
            UpstreamProtocolError,
            id="bad-content-length",
        ),
        pytest.param(fake.cut_fin(1, chunked=True), UpstreamTruncated, id="cut-fin-chunked"),
        pytest.param(fake.cut_rst(1, chunked=True), UpstreamTruncated, id="cut-rst-chunked"),
        pytest.param(
            fake.json_cut(10),
            # A streaming request refuses a JSON answer before reading it.
            (UpstreamProtocolError, UpstreamTruncated),
            id="json-cut",
        ),
        pytest.param(
            raw(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello"),
            UpstreamTruncated,
            id="undecodable-gzip",
        ),
    ],
)
async def test_upstream_failure_raises_its_gateway_error(
    upstream: FakeUpstream,
    provider: Provider,
    behaviour: fake.Behaviour,
    expected: type[GatewayError] | tuple[type[GatewayError], type[GatewayError]],
) -> None:
    """`expected` is one class for both modes, or (for `stream: true`, for `stream: false`)."""
    upstream.script("m", behaviour)
    per_mode = expected if isinstance(expected, tuple) else (expected, expected)
    for stream, wanted in zip((True, False), per_mode, strict=True):
        error = await error_of(provider, "m", stream=stream)
        assert type(error) is wanted, (stream, error)
        # Only a 400/422 passes the upstream's (sanitised) words on; no page ever does.
        assert "nginx" not in error.message
        if wanted is not UpstreamBadRequest:
            assert "fake upstream error" not in error.message
            assert "upstream-body" not in error.message


async def test_connection_refused_raises_connect_failed() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subject = openai_provider(f"http://127.0.0.1:{port}/v1")
    await subject.start()
    try:
        error = await error_of(subject, "m")
    finally:
        await subject.aclose()

    assert type(error) is ConnectFailed
    assert isinstance(error.__cause__, ConnectionRefusedError)  # the OS's error, chained


async def test_a_full_pool_waits_at_most_the_connect_limit_then_is_a_503_overloaded(
    upstream: FakeUpstream,
) -> None:
    upstream.script("stall", fake.stall_before_first_event())
    subject = openai_provider(upstream, max_connections=1)
    await subject.start()
    ctx = Context.with_timeout(10)
    try:
        holder = await subject.open(ctx, request("stall"))
        try:
            with pytest.raises(GatewayOverloaded) as raised:
                await subject.open(ctx, request("m", timeouts=Timeouts(connect=0.05)))
        finally:
            await holder.aclose()
    finally:
        ctx.close()
        await subject.aclose()
    assert raised.value.http_status == 503
    assert raised.value.retryable
    assert raised.value.retry_after == "1"
    assert "0.05s" in raised.value.message
    assert len(upstream.requests) == 1


async def test_a_pool_left_unset_is_as_large_as_the_streams_the_gateway_admits(
    upstream: FakeUpstream,
) -> None:
    upstream.script("stall", fake.stall_before_first_event())
    settings = UpstreamSettings(kind="openai", base_url=upstream.base_url, api_key=UPSTREAM_KEY)
    subject = PROVIDER_KINDS["openai"]("fake", settings, LimitSettings(max_streams=2))
    await subject.start()
    ctx = Context.with_timeout(10)
    try:
        holders = [await subject.open(ctx, request("stall")) for _ in range(2)]
        try:
            with pytest.raises(GatewayOverloaded) as raised:
                await subject.open(ctx, request("m", timeouts=Timeouts(connect=0.05)))
        finally:
            for holder in holders:
                await holder.aclose()
    finally:
        ctx.close()
        await subject.aclose()
    assert settings.max_connections is None
    assert "all 2 connections" in raised.value.message
    assert len(upstream.requests) == 2


async def test_a_connection_freed_within_the_connect_limit_is_taken_by_the_waiting_call(
    upstream: FakeUpstream,
) -> None:
    upstream.script("stall", fake.stall_before_first_event())
    subject = openai_provider(upstream, max_connections=1)
    await subject.start()
    ctx = Context.with_timeout(10)
    try:
        holder = await subject.open(ctx, request("stall"))
        waiting = asyncio.create_task(fetch(subject, "ok", timeouts=Timeouts(connect=5)))
        await asyncio.sleep(0)  # the call is waiting for the connection
        assert not waiting.done()
        await holder.aclose()
        body = await waiting
    finally:
        ctx.close()
        await subject.aclose()
    assert body.endswith(fake.DONE)


async def test_failed_calls_give_their_connection_back(upstream: FakeUpstream) -> None:
    upstream.script("m", fake.status(500))
    subject = openai_provider(upstream, max_connections=1)
    await subject.start()
    try:
        errors = [await error_of(subject, "m") for _ in range(3)]
    finally:
        await subject.aclose()
    assert [type(error) for error in errors] == [UpstreamServerError] * 3


# --- Retry-After -------------------------------------------------------------------------------

HTTP_DATE = "Wed, 21 Oct 2015 07:28:00 GMT"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"Retry-After": "5"}, "5", id="seconds"),
        pytest.param({"retry-after": "30"}, "30", id="lowercase-name"),
        pytest.param({"Retry-After": " 7 "}, "7", id="padded"),
        pytest.param({"Retry-After": HTTP_DATE}, HTTP_DATE, id="http-date"),
        pytest.param({"retry-after-ms": "1500"}, "2", id="ms-rounded-up"),
        pytest.param({"retry-after-ms": "1"}, "1", id="ms-at-least-one-second"),
        pytest.param({"retry-after-ms": "2000"}, "2", id="ms-whole"),
        pytest.param({"Retry-After": "5", "retry-after-ms": "100"}, "5", id="seconds-win"),
        pytest.param({"Retry-After": "soon", "retry-after-ms": "3000"}, "3", id="garbage-then-ms"),
        pytest.param({"Retry-After": "soon"}, None, id="garbage"),
        pytest.param({"Retry-After": "-1"}, None, id="negative"),
        pytest.param({"Retry-After": "12345678901"}, None, id="absurdly-long"),
        pytest.param({"Retry-After": "5; drop table"}, None, id="trailing-junk"),
        pytest.param({"Retry-After": "Wed, 21 Oct 2015"}, None, id="partial-date"),
        pytest.param({"retry-after-ms": "abc"}, None, id="ms-garbage"),
        pytest.param({"retry-after-ms": "nan"}, None, id="ms-nan"),
        pytest.param({}, None, id="absent"),
    ],
)
async def test_retry_after_is_preserved_in_a_safe_form(
    upstream: FakeUpstream, provider: Provider, headers: dict[str, str], expected: str | None
) -> None:
    upstream.script("m", fake.status(429, headers=headers))
    error = await error_of(provider, "m")

    assert isinstance(error, UpstreamRateLimited)
    assert error.retry_after == expected


async def test_infinite_retry_after_ms_is_dropped_not_raised(
    upstream: FakeUpstream, provider: Provider
) -> None:
    upstream.script("m", fake.status(429, headers={"retry-after-ms": "inf"}))
    try:
        error = await error_of(provider, "m")
    except Exception as exc:
        pytest.fail(f"{type(exc).__name__} escaped the provider: {exc!r}")

    assert isinstance(error, UpstreamRateLimited)
    assert error.retry_after is None


async def test_huge_retry_after_ms_is_bounded_like_retry_after(
    upstream: FakeUpstream, provider: Provider
) -> None:
    upstream.script("m", fake.status(429, headers={"retry-after-ms": "1e300"}))
    error = await error_of(provider, "m")

    assert isinstance(error, UpstreamRateLimited)
    assert error.retry_after is None or len(error.retry_after) <= 7


# --- the error body: bounded, parsed, sanitised ------------------------------------------------


def error_head_then_stall(code: int, first_bytes: bytes) -> fake.Behaviour:
    """An error status promising a 1 MiB body, `first_bytes` of it, then nothing, forever."""

    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        response = web.StreamResponse(status=code, headers={"Content-Type": "text/plain"})
        response.content_length = MiB
        await response.prepare(request)
        await response.write(first_bytes)
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")

    return behave


async def test_error_body_read_stops_at_the_limit_and_closes_the_connection(
    upstream: FakeUpstream,
) -> None:
    """The upstream never finishes its error body; the first `limit` bytes are enough."""
    upstream.script("m", error_head_then_stall(503, b"x" * 64))
    subject = openai_provider(upstream, max_error_body_bytes=16)
    await subject.start()
    try:
        error = await error_of(subject, "m")
        call = await upstream.next_call()
        await call.wait_closed_by_peer()
    finally:
        await subject.aclose()

    assert type(error) is UpstreamServerError


async def test_redirect_is_not_followed(upstream: FakeUpstream, provider: Provider) -> None:
    upstream.script(
        "m", fake.status(307, body=b"", headers={"Location": f"{upstream.base_url}/elsewhere"})
    )
    error = await error_of(provider, "m")

    assert isinstance(error, APIError)
    assert error.http_status == 502
    assert [call.path for call in upstream.requests] == ["/v1/chat/completions"]


async def test_huge_error_body_is_not_read_whole(upstream: FakeUpstream) -> None:
    upstream.script("m", fake.status(500, body=b"x" * (10 * MiB), content_type="text/plain"))
    subject = openai_provider(upstream, max_error_body_bytes=1024)
    await subject.start()
    try:
        error = await error_of(subject, "m")
        # The connection was closed, not drained: the provider still answers the next call.
        body = await fetch(subject, "ok")
    finally:
        await subject.aclose()

    assert type(error) is UpstreamServerError
    assert body.endswith(fake.DONE)


@pytest.mark.parametrize(
    ("limit", "code"),
    [(1024, None), (20 * MiB, "context_length_exceeded")],
    ids=["cut-at-limit", "under-limit"],
)
async def test_error_body_is_parsed_only_up_to_the_limit(
    upstream: FakeUpstream, limit: int, code: str | None
) -> None:
    """A 2 MiB JSON error: past a 1 KiB limit it is cut, so not parsed (no code, own message)."""
    body = fake.openai_error("x" * (2 * MiB), code="context_length_exceeded")
    upstream.script("m", fake.status(400, body=body))
    subject = openai_provider(upstream, max_error_body_bytes=limit)
    await subject.start()
    try:
        error = await error_of(subject, "m")
    finally:
        await subject.aclose()

    assert isinstance(error, UpstreamBadRequest)
    assert error.upstream_code == code
    assert len(error.message) <= 500


async def test_bad_request_message_is_sanitised_and_keeps_code_and_param(
    upstream: FakeUpstream, provider: Provider
) -> None:
    message = (
        f"Invalid request\r\nfor key {UPSTREAM_KEY} (see https://internal.example/v1/debug?x=1)\n"
        "and sk-proj-ABCDEFGH12345678 \x1b[31m, done"
    )
    upstream.script(
        "m", fake.status(400, body=fake.openai_error(message, param="messages", code="bad_x"))
    )
    error = await error_of(provider, "m")

    assert isinstance(error, UpstreamBadRequest)
    assert (error.upstream_code, error.param) == ("bad_x", "messages")
    assert error.message.startswith("Invalid request")
    assert error.message.endswith("done")
    for leaked in (UPSTREAM_KEY, "https://", "internal.example", "sk-proj", "\n", "\r", "\x1b"):
        assert leaked not in error.message


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(fake.openai_error("m", code="has spaces"), id="code-with-spaces"),
        pytest.param(fake.openai_error("m", code="c" * 65), id="code-too-long"),
        pytest.param({"error": {"message": "m", "code": 400}}, id="code-not-a-string"),
    ],
)
async def test_unsafe_upstream_codes_are_dropped(
    upstream: FakeUpstream, provider: Provider, body: dict[str, Any]
) -> None:
    upstream.script("m", fake.status(400, body=body))
    error = await error_of(provider, "m")

    assert isinstance(error, UpstreamBadRequest)
    assert error.upstream_code is None
    assert error.message == "m"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"<html>bad</html>", UpstreamBadRequest.default_message, id="html"),
        pytest.param(b"[1, 2]", UpstreamBadRequest.default_message, id="json-array"),
        pytest.param(b'{"error": "plain words"}', "plain words", id="error-string"),
        pytest.param(b'{"message": "top level"}', "top level", id="top-level-message"),
        pytest.param(
            b'{"type": "error", "error": {"type": "invalid_request_error", "message": "a"}}',
            "a",
            id="anthropic-shape",
        ),
        pytest.param(
            b'{"error": {"message": "\\n\\t"}}', UpstreamBadRequest.default_message, id="blank"
        ),
    ],
)
async def test_bad_request_message_comes_from_known_error_shapes_only(
    upstream: FakeUpstream, provider: Provider, body: bytes, message: str
) -> None:
    upstream.script("m", fake.status(400, body=body))
    error = await error_of(provider, "m")

    assert isinstance(error, UpstreamBadRequest)
    assert error.message == message


# --- sanitize_message --------------------------------------------------------------------------

SECRET = "hunter2-canary"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("plain words", "plain words"),
        ("see https://api.example.com/v1/x?key=1 now", "see [url] now"),
        ("see HTTP://EXAMPLE.COM", "see [url]"),
        ("key sk-abcdefgh12345678 leaked", "key [redacted] leaked"),
        ("key sk-ant-api03-ABCDEFGH leaked", "key [redacted] leaked"),
        (f"secret {SECRET} here", "secret [redacted] here"),
        ("two\r\nlines\nand\ttab\x00nul\u2028sep\x85nel", "two lines and tab nul sep nel"),
        ("  padded\n", "padded"),
        ("short sk-1234", "short sk-1234"),
    ],
)
def test_sanitize_message_examples(message: str, expected: str) -> None:
    assert sanitize_message(message, Redactor([SECRET])) == expected


def test_sanitize_message_caps_length() -> None:
    capped = sanitize_message("a" * 10_000)
    assert len(capped) == 500
    assert capped.endswith("...")


def test_sanitize_message_ignores_empty_secrets() -> None:
    assert sanitize_message("abc", Redactor([""])) == "abc"


def _is_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc" or char in "\u2028\u2029"


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text(alphabet=st.characters(codec="utf-8"), max_size=2000))
def test_sanitize_message_output_is_one_capped_line(prefix: str, text: str) -> None:
    out = sanitize_message(prefix + text, Redactor([SECRET]))

    assert len(out) <= 500
    assert not any(_is_control(char) for char in out)
    assert "\n" not in out
    assert "\r" not in out


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300))
def test_sanitize_message_never_shows_the_secret(before: str, after: str) -> None:
    out = sanitize_message(before + SECRET + after, Redactor([SECRET]))

    assert SECRET not in out
