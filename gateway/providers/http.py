"""HTTP plumbing shared by the HTTP providers: `HTTPProvider` (one pooled session per upstream,
the configured key, the call itself), and the one translation of aiohttp's exceptions and of
upstream error answers into the gateway's error tree.

`HTTPProvider` is what the `openai` and `anthropic` providers have in common; a subclass only
says which APIs it speaks, how its API expects the key by default (`Authorization: Bearer`
or `x-api-key`) and which headers the API wants besides (`anthropic-version`).

`translate_errors()` is this boundary's `map_httpcore_exceptions`: every aiohttp or OS error
raised while talking to an upstream passes through it and leaves as a `GatewayError` chained to
the original (`raise ... from exc`). Classification is by exception type and HTTP status only.

Connections to an upstream are bounded by its `max_connections`: a call takes one of them
before it connects and gives it back when its response is closed. When they are all in use, the
call waits for one at most its `connect` deadline (the time it may take to get connected at
all), then fails with a retryable 503 `gateway_overloaded`, never hanging: aiohttp's own pool
would wait for ever, or give the wait a `ConnectTimeout` as if the upstream were unreachable.

`HTTPUpstreamResponse` wraps a 2xx `aiohttp.ClientResponse`; `raise_for_upstream_status` reads
an error answer (bounded) and raises what it stands for, with a sanitised message for the
statuses whose message is the client's business (400/422; OpenAI's `{"error": {"message",
"code", "param"}}` and Anthropic's `{"type": "error", "error": {"type", "message"}}` are both
understood) and the gateway's own message otherwise (no upstream HTML, URLs or keys reach a
client). Anthropic's 529 (overloaded) is a server error like any 5xx, named as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import email.utils
import errno
import json
import math
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, ClassVar, Literal

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.connector import Connection

from gateway.apis import Api
from gateway.errors import (
    ConnectFailed,
    ConnectionReset,
    ConnectTimeout,
    DeadlineExceeded,
    GatewayError,
    GatewayOverloaded,
    NetworkError,
    RequestTooLarge,
    UpstreamBadRequest,
    UpstreamProtocolError,
    UpstreamTruncated,
)
from gateway.providers.upstream import Provider, UpstreamRequest, UpstreamResponse
from gateway.redaction import Redactor
from gateway.settings import LimitSettings, UpstreamSettings
from gateway.streaming import Context, as_gateway_error, error_for_status

__all__ = [
    "HTTPProvider",
    "HTTPUpstreamResponse",
    "create_session",
    "raise_for_upstream_status",
    "sanitize_message",
    "translate_errors",
]

_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_KEYLIKE = re.compile(r"\b(sk|pk|rk|key|api)[-_][A-Za-z0-9_\-]{8,}", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_RETRY_AFTER = re.compile(
    r"^\s*(\d{1,7}(\.\d+)?|[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} [\d:]{8} GMT)\s*$"
)
_MAX_MESSAGE = 500
_MAX_RETRY_AFTER = 10_000_000  # seconds; the same 7 digits `_RETRY_AFTER` accepts
#: The gateway's own message for statuses that say more than "server error".
_STATUS_MESSAGES = {529: "the upstream is overloaded"}
# Per-stream buffering of an upstream body, bounded for a client that stops reading (the
# relay then stops asking for more): the kernel holds at most what the socket's receive buffer
# takes (`_STREAM_RCVBUF`, which also bounds what one `recv()` returns: at most twice it),
# aiohttp stops reading the socket once twice `_STREAM_READ_BUFFER` bytes wait (plus what the
# `recv()` that crossed the mark brought, kept unparsed), and one read hands the relay at
# most `_READ_MAX` bytes (one batch of events, one client write). A window of 32 KiB carries
# about 300 kB/s at 100 ms of round trip, a hundred times what the fastest model streams.
# Whole answers (`stream: false`) are read into memory anyway, bounded by
# `limits.max_response_bytes`: their connections keep the kernel's autotuned window, whose
# throughput an embeddings batch of megabytes needs (`_ANSWER_READ_BUFFER`).
_STREAM_RCVBUF = 32 * 1024
_STREAM_READ_BUFFER = 8 * 1024
_ANSWER_READ_BUFFER = 64 * 1024
_READ_MAX = 16 * 1024
#: Content types that cannot carry an event stream (an upstream that ignored `stream: true`, or
#: an error page with a 200). Anything else is given the benefit of the doubt and framed as SSE.
_NOT_A_STREAM = frozenset({"application/json", "text/html"})

AuthScheme = Literal["bearer", "x-api-key"]
#: The `on_sent` hook of the call the current task is sending (set around `session.post`).
_ON_SENT: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "gateway_upstream_on_sent", default=None
)


class HTTPProvider(Provider):
    """An upstream API reached over HTTP(S) through one pooled `aiohttp.ClientSession`.

    The body is sent as the endpoint built it, to `base_url + request.path`, authenticated with
    the key from the settings only (never the client's). A subclass sets `default_auth_scheme`
    and may add its API's own headers in `api_headers`.
    """

    #: How the key is sent when the upstream's `auth_scheme` is not set.
    default_auth_scheme: ClassVar[AuthScheme] = "bearer"
    #: The APIs of the upstream's family (a subclass says which).
    spoken_apis: ClassVar[tuple[Api, ...]]

    def __init__(
        self,
        name: str,
        settings: UpstreamSettings,
        limits: LimitSettings,
        redactor: Redactor | None = None,
    ) -> None:
        """`redactor` keeps every secret of the gateway out of the error answers this upstream's
        messages become (default: this upstream's own key)."""
        super().__init__(name, *self.spoken_apis)
        assert settings.base_url is not None  # enforced by UpstreamSettings
        self.settings = settings
        self._base_url = str(settings.base_url).rstrip("/")
        # None: as many as the gateway admits streams, so the pool is never the tighter limit.
        self._max_connections = settings.max_connections or limits.max_streams
        self._connections = asyncio.Semaphore(self._max_connections)
        self._max_error_body = limits.max_error_body_bytes
        key = settings.api_key.get_secret_value() if settings.api_key else None
        self._auth = _auth_headers(key, settings.auth_scheme or self.default_auth_scheme)
        self._redactor = redactor if redactor is not None else Redactor([key] if key else [])
        # Streams and whole answers each have their pool (`create_session`), by `stream`.
        self._sessions: dict[bool, aiohttp.ClientSession] = {}

    def api_headers(self, request: UpstreamRequest) -> dict[str, str]:
        """Headers this API wants on every call, before the client's forwarded ones."""
        return {}

    async def start(self) -> None:
        if not self._sessions:
            for stream in (True, False):
                self._sessions[stream] = create_session(self._max_connections, stream=stream)

    async def aclose(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            await session.close()

    async def open(self, ctx: Context, request: UpstreamRequest) -> UpstreamResponse:
        await self.start()
        session = self._sessions[request.stream]
        connect = await self._take_connection(request.timeouts.connect)
        sending = _ON_SENT.set(request.on_sent)
        try:
            with translate_errors(connect_limit=request.timeouts.connect):
                response = await session.post(
                    self._base_url + request.path,
                    data=request.body,
                    headers=self._headers(request),
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(
                        total=None, connect=connect, sock_connect=connect, sock_read=None
                    ),
                )
        except BaseException:
            self._connections.release()
            raise
        finally:
            _ON_SENT.reset(sending)
        try:
            await raise_for_upstream_status(
                response, max_body=self._max_error_body, redactor=self._redactor
            )
            if request.stream and response.content_type in _NOT_A_STREAM:
                raise UpstreamProtocolError(
                    f"the upstream answered a streaming request with {response.content_type}"
                )
        except BaseException as exc:
            response.close()
            self._connections.release()
            # Raised without the frames below (and this one's answer): the error is kept (the
            # request's record, the chain's last error) and their locals - the answer, its
            # error body, aiohttp's inflated buffers - would stay alive with it.
            del response
            raise exc.with_traceback(None)  # noqa: B904 - the same error, re-raised
        return HTTPUpstreamResponse(response, on_close=self._connections.release)

    async def _take_connection(self, connect: float | None) -> float | None:
        """Take one of the upstream's `max_connections`, waiting at most `connect` seconds;
        returns what is left of `connect` to get connected."""
        if not self._connections.locked():
            await self._connections.acquire()  # free: returns at once
            return connect
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(connect):
                await self._connections.acquire()
        except TimeoutError:
            raise GatewayOverloaded(
                f"all {self._max_connections} connections to the upstream stayed in use for "
                f"{connect:g}s",
                retry_after="1",
            ) from None
        if connect is None:
            return None
        return max(connect - (loop.time() - started), 0.001)

    def _headers(self, request: UpstreamRequest) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if request.stream else "application/json",
            # Compressed SSE would be buffered by the decompressor: ask for identity.
            "Accept-Encoding": "identity" if request.stream else "gzip, deflate",
            **self.api_headers(request),
            **request.headers,
            **self._auth,
        }
        if request.request_id:
            headers["X-Request-Id"] = request.request_id
        return headers


def _auth_headers(key: str | None, scheme: AuthScheme) -> dict[str, str]:
    if not key:
        return {}
    if scheme == "x-api-key":
        return {"x-api-key": key}
    return {"Authorization": f"Bearer {key}"}


def create_session(max_connections: int, *, stream: bool = True) -> aiohttp.ClientSession:
    """A pooled session sized for long-lived streams (`stream`) or for whole answers, with no
    hidden total timeout.

    A stream's connections have a small receive buffer and aiohttp a small read buffer: what
    a stream holds for a client that reads slowly is bounded by them (see `_STREAM_RCVBUF`),
    and set on the socket before it connects (the window scale is agreed on then); public
    means (`socket_factory`, `read_bufsize`) where the transport's read size is not.

    aiohttp's default `ClientTimeout(total=300)` would cut every stream at five minutes; the
    gateway's own deadlines (a `Context` per request) bound each call instead. Redirects are
    never followed, environment proxies are not trusted, and each request reports to its call's
    `on_sent` hook once its head is written (`_SentReportingRequest`), so the first-byte clock
    starts when the request is sent.
    """
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=max_connections,
        ttl_dns_cache=300,
        socket_factory=_stream_socket if stream else None,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None),
        request_class=_SentReportingRequest,
        trust_env=False,
        auto_decompress=True,
        read_bufsize=_STREAM_READ_BUFFER if stream else _ANSWER_READ_BUFFER,
    )


def _stream_socket(addr_info: AddrInfoType) -> socket.socket:
    """A socket for a stream's connection: its receive buffer set before it connects."""
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=kind, proto=proto)
    with contextlib.suppress(OSError):  # a platform without it: the kernel's default
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _STREAM_RCVBUF)
    return sock


class _SentReportingRequest(aiohttp.ClientRequest):
    """Calls the `on_sent` hook of the call being sent once the request's head is written (and
    its body's writing started), on the connection it got.

    What a `TraceConfig` with `on_request_headers_sent` would report, without the dozen trace
    signals aiohttp then awaits on every request. The hook comes from `_ON_SENT`, which
    `HTTPProvider.open` sets around `session.post`: aiohttp sends the request in the task that
    called it.
    """

    async def send(self, conn: Connection) -> aiohttp.ClientResponse:
        response = await super().send(conn)
        hook = _ON_SENT.get()
        if hook is not None:
            hook()
        return response


def translate_errors(*, connect_limit: float | None = None) -> _ErrorTranslation:
    """Re-raise aiohttp/OS errors of an upstream call as the `GatewayError` they stand for:
    `with translate_errors(): ...`.

    `connect_limit` is the connect timeout in force, named in a `ConnectTimeout`'s message.
    A `GatewayError` and anything that is not an `Exception` (a cancellation) pass through.
    """
    return _ErrorTranslation(connect_limit)


class _ErrorTranslation:
    """`translate_errors()`'s context manager: a slotted object rather than a generator, since
    a stream holds one for as long as it reads its upstream."""

    __slots__ = ("_connect_limit",)

    def __init__(self, connect_limit: float | None) -> None:
        self._connect_limit = connect_limit

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, GatewayError):
            error = _translation(exc, self._connect_limit)
            if error is not None:
                raise error from exc


def _translation(exc: Exception, connect_limit: float | None) -> GatewayError | None:
    """The `GatewayError` an aiohttp/OS error stands for (None: not this boundary's error).
    Most specific first: aiohttp's classes inherit from each other and from `OSError`."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimeout(limit=connect_limit)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return DeadlineExceeded()
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectFailed()
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ConnectionReset("the upstream closed the connection without an answer")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamTruncated()
    if isinstance(exc, aiohttp.ClientOSError):
        if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
            return ConnectionReset()
        return NetworkError()
    if isinstance(exc, aiohttp.ClientConnectionError):
        return ConnectionReset() if isinstance(exc, ConnectionResetError) else NetworkError()
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamProtocolError("the upstream sent an invalid HTTP response")
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return as_gateway_error(exc)
    return None


class HTTPUpstreamResponse(UpstreamResponse):
    """A 2xx aiohttp response; closes its connection unless the body was read to the end."""

    __slots__ = ("_closed", "_on_close", "_response", "headers", "status")

    def __init__(
        self, response: aiohttp.ClientResponse, *, on_close: Callable[[], None] | None = None
    ) -> None:
        self._response = response
        self._on_close = on_close
        self.status = response.status
        self.headers = response.headers
        self._closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        content = self._response.content
        with translate_errors():
            while not content.at_eof():
                try:
                    # Handed on, not kept in a local: while the relay's write waits on a slow
                    # client, this generator waits here and holds none of the body.
                    yield await content.read(_READ_MAX)
                except aiohttp.ClientError:
                    # aiohttp raises a cut or reset connection before the bytes it still holds,
                    # which the upstream did send (complete events, maybe): those come first.
                    held = content._read_nowait(-1)
                    if held:
                        yield held
                    raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._response.content.at_eof():
                self._response.release()
            else:
                self._response.close()
        finally:
            if self._on_close is not None:
                self._on_close()


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most `limit` bytes of the body as it arrives (decompressed: aiohttp inflates a
    compressed body as it is read, a bounded piece at a time, so a small gzip body that
    inflates to gigabytes costs at most `limit` plus what aiohttp inflated ahead); the rest is
    not read."""
    body = bytearray()
    with translate_errors():
        while len(body) < limit:
            chunk = await response.content.read(min(limit - len(body), _READ_MAX))
            if not chunk:
                break
            body += chunk
    return bytes(body)


async def raise_for_upstream_status(
    response: aiohttp.ClientResponse, *, max_body: int, redactor: Redactor | None = None
) -> None:
    """Raise the error a non-2xx upstream answer stands for (closing the response first).

    What of the upstream's text reaches the client (message, code, param) passes `redactor`
    first: a code or param that held a secret's fragment is dropped, not shown redacted.
    """
    if 200 <= response.status < 300:
        return
    try:
        body = await read_bounded(response, max_body)
    finally:
        response.close()
    status = response.status
    retry_after = _retry_after(response.headers)
    if status == 413:
        raise RequestTooLarge("the upstream rejected the request as too large")
    if status in (400, 422):
        message, code, param = _error_details(body, redactor)
        raise UpstreamBadRequest(
            sanitize_message(message, redactor) if message else None,
            upstream_code=code,
            param=param,
        )
    error = error_for_status(status, _STATUS_MESSAGES.get(status), retry_after=retry_after)
    error.retry_delay = _retry_delay(response.headers)
    raise error


def _retry_delay(headers: Any) -> float | None:
    """The upstream's retry hint in seconds, as precise as it gave it: `retry-after-ms` first
    (OpenAI's), else `Retry-After` in seconds or as an HTTP date. None if neither is sane."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            seconds = float(millis) / 1000
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds) and 0 <= seconds < _MAX_RETRY_AFTER:
            return seconds
    value = headers.get("Retry-After")
    if value is None or not _RETRY_AFTER.match(value):
        return None
    text = str(value).strip()
    if text[0].isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _retry_after(headers: Any) -> str | None:
    """The upstream's retry hint as a `Retry-After` value, if it gave a sane one."""
    value = headers.get("Retry-After")
    if value is not None and _RETRY_AFTER.match(value):
        return str(value).strip()
    millis = headers.get("retry-after-ms")
    if millis is None:
        return None
    try:
        seconds = float(millis) / 1000
    except ValueError:
        return None
    if not (math.isfinite(seconds) and 0 <= seconds < _MAX_RETRY_AFTER):
        return None
    return str(max(1, math.ceil(seconds)))


def _error_details(
    body: bytes, redactor: Redactor | None = None
) -> tuple[str | None, str | None, str | None]:
    """(message, code, param) from an OpenAI- or Anthropic-shaped error body, if present; a
    code or param is kept only if it is a plain identifier with no fragment of a secret."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None, None, None
    if not isinstance(payload, dict):
        return None, None, None
    error = payload.get("error")
    if isinstance(error, str):
        return error, None, None
    if not isinstance(error, dict):
        message = payload.get("message")
        return (message if isinstance(message, str) else None), None, None
    message = error.get("message")
    return (
        message if isinstance(message, str) else None,
        _identifier(error.get("code"), redactor),
        _identifier(error.get("param"), redactor),
    )


def _identifier(value: object, redactor: Redactor | None) -> str | None:
    """An upstream's `code` or `param` fit to relay: a short identifier holding no secret."""
    if not isinstance(value, str) or not _CODE.match(value):
        return None
    if redactor is not None and redactor.redact_text(value) is not value:
        return None
    return value


def sanitize_message(message: str, redactor: Redactor | None = None) -> str:
    """A provider message made safe to show: one line, capped, no URLs, no fragment of the
    gateway's secrets (`redactor`, by value) and no other key-like strings (by shape)."""
    if redactor is not None:
        message = redactor.redact_text(message)
    message = _URL.sub("[url]", message)
    message = _KEYLIKE.sub("[redacted]", message)
    message = _CONTROL.sub(" ", message).strip()
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    return message
