"""The fake upstream's behaviours: how it answers a call - scripted SSE bytes, stalls, cuts
(FIN, RST, a chunked body without its last chunk, a reset before the headers), error statuses.

Each is a `Behaviour` (`tests.support.fake_call`) picked per model name by `FakeUpstream.script`
and re-exported by `tests.support.fake_upstream`, the module tests import. A behaviour that
takes over the connection (raw bytes, cuts) works on the asyncio transport under aiohttp and
returns a detached response, so aiohttp writes nothing more on it.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, NoReturn

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from tests.support.fake_call import Behaviour, UpstreamCall
from tests.support.openai_wire import (
    DONE,
    chunk_event,
    completion,
    dumps,
    openai_chunks,
    openai_error,
)

__all__ = [
    "DetachedResponse",
    "cut_fin",
    "cut_rst",
    "end_clean_without_done",
    "flood",
    "gaps",
    "html",
    "huge_event",
    "invalid_json_event",
    "json_completion",
    "json_cut",
    "json_stall_before_headers",
    "reset_before_headers",
    "sequence",
    "sse_stream",
    "stall_after",
    "stall_before_first_event",
    "stall_before_headers",
    "status",
]

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


class DetachedResponse(web.StreamResponse):
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
    return DetachedResponse()


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


def flood(event_bytes: int = 1024) -> Behaviour:
    """200 ``text/event-stream`` of identical content events, written as fast as the
    connection takes them, until the peer goes away; ``call.bytes_sent`` counts the body bytes
    handed to the connection (each write waits while aiohttp's buffer is over its limit, so a
    reader that stops makes the count stop too)."""
    envelope = len(chunk_event({"content": ""}, None, "fake-model", "chatcmpl-fake"))
    event = chunk_event(
        {"content": "x" * max(0, event_bytes - envelope)}, None, "fake-model", "chatcmpl-fake"
    )
    batch = event * max(1, 16384 // len(event))

    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        sink = await _EventSink.open(request, call, chunked=True)
        while True:
            await sink.write(batch)
            call.bytes_sent += len(batch)

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
