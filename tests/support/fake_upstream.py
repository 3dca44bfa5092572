"""A scriptable fake OpenAI-compatible upstream: a real aiohttp server for end-to-end tests.

Role: stand in for an LLM provider behind the gateway. It listens on 127.0.0.1 (random port),
answers every method on every path under ``/v1/`` and picks a *behaviour* by the request body's
``"model"``: stream scripted SSE bytes, stall, cut the connection (FIN or RST), or misbehave.

Invariants:

- Every request whose body was received is recorded as one `UpstreamCall`, in arrival order, in
  `FakeUpstream.requests` and (once each) through `FakeUpstream.next_call`, with the loop time
  it arrived at (``call.arrived``): `calls_for(model)` and `gaps(calls)` give a test the attempts
  one target saw and their spacing.
- ``call.closed_by_peer`` is set only when the *peer* went away while the handler was running
  (aiohttp handler cancellation, or a write on a closed connection). The fake's own cuts set
  ``call.cut_by_upstream`` instead, and `FakeUpstream.close` cancelling a stalled handler sets
  neither. ``call.finished`` is set whenever the handler ends.
- Bytes are written exactly as given, one write per chunk; nothing is reformatted.
- A behaviour that takes over the connection (raw bytes, cuts) returns a detached response, so
  aiohttp writes nothing more on it (no terminating chunk, no error page).
- ``CancelledError`` is always re-raised; synchronisation uses events, never polling.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, NoReturn, TypeAlias

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from tests.support.openai_wire import (
    CREATED,
    DONE,
    chunk_event,
    completion,
    dumps,
    openai_chunks,
    openai_error,
)

__all__ = [
    "CREATED",
    "DONE",
    "Behaviour",
    "FakeUpstream",
    "UpstreamCall",
    "cut_fin",
    "cut_rst",
    "end_clean_without_done",
    "gaps",
    "html",
    "huge_event",
    "invalid_json_event",
    "json_completion",
    "json_cut",
    "json_stall_before_headers",
    "openai_chunks",
    "openai_error",
    "reset_before_headers",
    "sequence",
    "sse_stream",
    "stall_after",
    "stall_before_first_event",
    "stall_before_headers",
    "status",
]

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


@dataclass(eq=False, slots=True)
class UpstreamCall:
    """One request received by the fake, and what became of its connection.

    ``model`` is ``body["model"]`` ("" when absent); ``body`` is the parsed JSON object ({} when
    the body is not a JSON object); ``raw_body`` is the bytes as received. ``headers`` are the
    request headers as received (case-insensitive).

    ``arrived`` is the loop time the request's body had been read at (the attempt's timestamp).
    ``started``/``finished`` bracket the behaviour. ``closed_by_peer`` (with ``close_time``, the
    loop time it was seen) means the peer left while the handler ran. ``cut_by_upstream`` means
    the fake closed the connection itself (a cut, or the end of a close-delimited body).
    """

    model: str
    body: dict[str, Any]
    headers: Mapping[str, str]
    method: str = "POST"
    path: str = "/v1/chat/completions"
    raw_body: bytes = b""
    started: asyncio.Event = field(default_factory=asyncio.Event)
    closed_by_peer: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    close_time: float | None = None
    cut_by_upstream: bool = False
    arrived: float = field(default_factory=lambda: asyncio.get_running_loop().time())

    async def wait_closed_by_peer(self, timeout: float = 10) -> None:  # noqa: ASYNC109 - a hang guard
        """Wait until the peer closed the connection mid-handler; the timeout only catches hangs."""
        try:
            async with asyncio.timeout(timeout):
                await self.closed_by_peer.wait()
        except TimeoutError:
            raise AssertionError(
                f"the peer did not close the upstream connection for model {self.model!r} "
                f"within {timeout}s (handler finished: {self.finished.is_set()}, "
                f"cut by upstream: {self.cut_by_upstream})"
            ) from None

    async def wait_finished(self, timeout: float = 10) -> None:  # noqa: ASYNC109 - a hang guard
        """Wait until the handler ended for any reason; the timeout only catches hangs."""
        try:
            async with asyncio.timeout(timeout):
                await self.finished.wait()
        except TimeoutError:
            raise AssertionError(
                f"the upstream handler for model {self.model!r} still runs after {timeout}s"
            ) from None

    def _mark_closed_by_peer(self) -> None:
        if not self.closed_by_peer.is_set():
            self.close_time = asyncio.get_running_loop().time()
            self.closed_by_peer.set()


Behaviour: TypeAlias = Callable[[web.Request, UpstreamCall], Awaitable[web.StreamResponse]]
"""Answers one request. It may write raw bytes and close; it must re-raise CancelledError."""


class FakeUpstream:
    """The fake provider: a real aiohttp server with handler cancellation on peer close.

    Use as ``async with FakeUpstream() as up:`` (or `start`/`close`). Point the client at
    `base_url`; choose behaviours per model with `script`; everything else gets `default`.
    `close` cancels handlers that still run (without marking them closed by the peer).
    """

    def __init__(self, *, default: Behaviour | None = None) -> None:
        self.default: Behaviour = default if default is not None else sse_stream()
        self.requests: list[UpstreamCall] = []
        self._scripts: dict[str, Behaviour] = {}
        self._arrivals: asyncio.Queue[UpstreamCall] = asyncio.Queue()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._closing = False

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeUpstream is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, model: str, behaviour: Behaviour) -> None:
        """Answer requests whose ``body["model"] == model`` with ``behaviour`` (replaces)."""
        self._scripts[model] = behaviour

    def calls_for(self, model: str) -> list[UpstreamCall]:
        """The calls received for ``model``, in arrival order."""
        return [call for call in self.requests if call.model == model]

    async def next_call(self, timeout: float = 10) -> UpstreamCall:  # noqa: ASYNC109 - a hang guard
        """Return the oldest call not yet returned here, waiting for one if needed."""
        try:
            async with asyncio.timeout(timeout):
                return await self._arrivals.get()
        except TimeoutError:
            raise AssertionError(
                f"no new upstream request within {timeout}s "
                f"({len(self.requests)} received in total)"
            ) from None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/v1/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def close(self) -> None:
        """Cancel running handlers, then stop the server. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing = True
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers)
        await runner.cleanup()

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = _parse_object(raw)
        model = body.get("model")
        call = UpstreamCall(
            model=model if isinstance(model, str) else "",
            body=body,
            headers=request.headers,
            method=request.method,
            path=request.path,
            raw_body=raw,
        )
        self.requests.append(call)
        self._arrivals.put_nowait(call)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        call.started.set()
        try:
            return await self._scripts.get(call.model, self.default)(request, call)
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the peer closes; close() cancels it too.
            if not self._closing and not call.cut_by_upstream:
                call._mark_closed_by_peer()
            raise
        except ConnectionError:
            # A write found the connection closed (or reset) by the peer.
            call._mark_closed_by_peer()
            return _DetachedResponse()
        finally:
            self._handlers.discard(task)
            call.finished.set()


class _DetachedResponse(web.StreamResponse):
    """Returned when the behaviour owns the connection: aiohttp must not write anything more."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


class _EventSink:
    """One 200 SSE response body: chunked through aiohttp, or raw and delimited by close."""

    def __init__(
        self, request: web.Request, call: UpstreamCall, response: web.StreamResponse | None
    ) -> None:
        self._request = request
        self._call = call
        self._response = response

    @classmethod
    async def open(cls, request: web.Request, call: UpstreamCall, *, chunked: bool) -> _EventSink:
        """Send (and flush) the 200 event-stream headers."""
        if not chunked:
            _write_raw(request, _raw_head(200, {**_SSE_HEADERS, "Connection": "close"}))
            return cls(request, call, None)
        response = web.StreamResponse(headers=_SSE_HEADERS)
        response.enable_chunked_encoding()
        await response.prepare(request)
        return cls(request, call, response)

    async def write(self, data: bytes) -> None:
        if self._response is None:
            _write_raw(self._request, data)
        else:
            await self._response.write(data)

    async def write_all(self, chunks: list[bytes], delay: float = 0.0) -> None:
        for index, chunk in enumerate(chunks):
            if index and delay:
                await asyncio.sleep(delay)
            await self.write(chunk)

    async def end(self) -> web.StreamResponse:
        """End the body properly: the terminating chunk, or FIN for a close-delimited body."""
        if self._response is None:
            return _cut(self._request, self._call, rst=False)
        await self._response.write_eof()
        return self._response


def _parse_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _transport(request: web.Request) -> asyncio.Transport:
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the peer closed the connection")
    return transport


def _write_raw(request: web.Request, data: bytes) -> None:
    _transport(request).write(data)


def _reason(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


def _raw_head(code: int, headers: Mapping[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {code} {_reason(code)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _cut(request: web.Request, call: UpstreamCall, *, rst: bool) -> web.StreamResponse:
    """Close the connection now: FIN after the buffered bytes, or RST (SO_LINGER 0, abort)."""
    transport = _transport(request)
    call.cut_by_upstream = True
    if rst:
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()
    return _DetachedResponse()


async def _wait_forever() -> NoReturn:
    await asyncio.get_running_loop().create_future()
    raise AssertionError("a never-resolved future resolved")


def gaps(calls: list[UpstreamCall]) -> list[float]:
    """Seconds between the arrivals of consecutive ``calls``."""
    return [later.arrived - earlier.arrived for earlier, later in itertools.pairwise(calls)]


def sequence(*behaviours: Behaviour) -> Behaviour:
    """Use the behaviours in turn, one per call; the last one answers all later calls.

    The turn is kept in the returned behaviour: build a new one per test.
    """
    if not behaviours:
        raise ValueError("sequence() needs at least one behaviour")
    remaining = list(behaviours)

    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        behaviour = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        return await behaviour(request, call)

    return behave


def sse_stream(
    chunks: list[bytes] | None = None,
    *,
    delay: float = 0.0,
    done: bool = True,
    finish: bool = True,
    chunked: bool = True,
) -> Behaviour:
    """200 ``text/event-stream`` with ``chunks`` written as given, one write each.

    Default chunks: ``openai_chunks(["Hel", "lo", "!"])``, without the finish chunk when
    ``finish`` is False (``finish`` only applies to the default). ``DONE`` is appended when
    ``done``. ``delay`` seconds pass between writes. ``chunked=False`` sends a close-delimited
    body (``Connection: close``, no length, no chunking) that ends with a FIN.
    A client sees the exact bytes and a clean end of body.
    """
    body = list(chunks) if chunks is not None else _default_chunks(finish=finish)
    if done:
        body.append(DONE)

    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        sink = await _EventSink.open(request, call, chunked=chunked)
        await sink.write_all(body, delay)
        return await sink.end()

    return behave


def _default_chunks(*, finish: bool = True) -> list[bytes]:
    return openai_chunks(["Hel", "lo", "!"], finish_reason="stop" if finish else None)


def end_clean_without_done(finish: bool) -> Behaviour:
    """A chunked stream that ends properly (terminating chunk) but never sends ``[DONE]``.

    With ``finish`` the last event has ``finish_reason: "stop"``; without, no event has one.
    """
    return sse_stream(done=False, finish=finish)


def invalid_json_event() -> Behaviour:
    """A normal first event, then ``data: {not json``, then the rest with finish and DONE."""
    first, *rest = _default_chunks()
    return sse_stream([first, b"data: {not json\n\n", *rest])


def huge_event(size: int) -> Behaviour:
    """One normal event, then one event whose ``data`` is exactly ``size`` bytes, then DONE.

    The big data is a valid ``chat.completion.chunk`` whose delta content is ``"x" * n``,
    padded so that the JSON text is ``size`` bytes long.
    """
    envelope = len(chunk_event({"content": ""}, None, "fake-model", "chatcmpl-fake"))
    overhead = envelope - len(b"data: \n\n")
    if size < overhead:
        raise ValueError(f"huge_event size must be at least {overhead} bytes")
    big = chunk_event({"content": "x" * (size - overhead)}, None, "fake-model", "chatcmpl-fake")
    return sse_stream([openai_chunks(["Hel"], finish_reason=None)[0], big])


def stall_before_headers() -> Behaviour:
    """Never answer: the client waits for headers until it gives up (then closed_by_peer)."""

    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        await _wait_forever()

    return behave


json_stall_before_headers = stall_before_headers


def reset_before_headers() -> Behaviour:
    """Read the request, then abort the connection with a TCP RST before any response byte.

    An aiohttp client gets ``ServerDisconnectedError`` or ``ClientOSError`` (ECONNRESET) while
    waiting for the status line: the reset-before-headers a retry policy must cover.
    """

    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        return _cut(request, call, rst=True)

    return behave


def stall_before_first_event() -> Behaviour:
    """Send (and flush) 200 event-stream headers, then nothing, forever."""
    return stall_after(0)


def stall_after(n_chunks: int, chunks: list[bytes] | None = None) -> Behaviour:
    """Send 200 event-stream headers and the first ``n_chunks`` chunks, then stall forever."""
    body = (list(chunks) if chunks is not None else _default_chunks())[:n_chunks]

    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        sink = await _EventSink.open(request, call, chunked=True)
        await sink.write_all(body)
        await _wait_forever()

    return behave


def _cutting(
    after_chunks: int, chunked: bool, half: bytes, chunks: list[bytes] | None, *, rst: bool
) -> Behaviour:
    body = (list(chunks) if chunks is not None else _default_chunks())[:after_chunks]
    if half:
        body.append(half)

    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        sink = await _EventSink.open(request, call, chunked=chunked)
        await sink.write_all(body)
        return _cut(request, call, rst=rst)

    return behave


def cut_fin(
    after_chunks: int, *, chunked: bool, half: bytes = b"", chunks: list[bytes] | None = None
) -> Behaviour:
    """Send headers, ``after_chunks`` events (and ``half``, a partial event), then FIN.

    ``chunked=True``: the terminating zero-length chunk never comes; an aiohttp client reads the
    events, then gets ``ClientPayloadError`` (TransferEncodingError inside).
    ``chunked=False``: a close-delimited body; an aiohttp client sees a clean EOF after the
    partial data - only the missing ``[DONE]`` tells that the stream was cut.
    """
    return _cutting(after_chunks, chunked, half, chunks, rst=False)


def cut_rst(
    after_chunks: int, *, chunked: bool, half: bytes = b"", chunks: list[bytes] | None = None
) -> Behaviour:
    """Like `cut_fin` but abort with a TCP RST (``SO_LINGER`` 0, ``transport.abort()``).

    An aiohttp client reads the events sent before the RST, then gets ``ClientPayloadError``
    (the ``ConnectionResetError`` is in its message) for both ``chunked`` values.
    """
    return _cutting(after_chunks, chunked, half, chunks, rst=True)


def status(
    code: int,
    *,
    body: bytes | str | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> Behaviour:
    """An error answer with Content-Length; default body is `openai_error` JSON for the code."""
    if body is None:
        body = openai_error(f"fake upstream error {code}", type="fake_error")
    payload = dumps(body) if isinstance(body, dict) else body
    data = payload.encode() if isinstance(payload, str) else payload
    all_headers = {"Content-Type": content_type, **(headers or {})}

    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        return web.Response(status=code, body=data, headers=all_headers)

    return behave


def html(code: int) -> Behaviour:
    """An nginx-style HTML error page (``text/html``) with status ``code``."""
    title = f"{code} {_reason(code)}"
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return status(code, body=page, content_type="text/html")


def json_completion(text: str = "Hello!", *, model: str = "fake-model") -> Behaviour:
    """A non-streaming 200 ``chat.completion`` JSON with ``usage`` and a Content-Length."""
    return status(200, body=completion(text, model))


def json_cut(after_bytes: int, *, text: str = "Hello!", model: str = "fake-model") -> Behaviour:
    """A `json_completion` whose Content-Length is never met: ``after_bytes`` bytes, then FIN.

    An aiohttp client gets ``ClientPayloadError`` (ContentLengthError inside) from ``read()``.
    """
    data = completion(text, model)
    if not 0 <= after_bytes < len(data):
        raise ValueError(f"after_bytes must be in [0, {len(data)})")

    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[:after_bytes])
        return _cut(request, call, rst=False)

    return behave
