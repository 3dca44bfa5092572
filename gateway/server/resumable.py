"""Resumable streams: a stream whose answer outlives its client's connection.

Which streams (`wants_resumable`): every stream of a route with `resumable: true`; a request
with `x-gateway-resumable: true`; and a Responses `background: true` stream whose targets
cannot keep it themselves (every one is translated: an upstream that speaks Responses keeps
its background responses, and such a request is relayed to it as any other).

How (`ResumableStream.serve`): the stream gets an unguessable id (`x-gateway-stream-id`) and a
buffer in the state store (`gateway.state.StreamBuffers`). The relay runs in a task the app
owns (`STREAM_RUNS`), bounded by the request's total deadline and cancelled when the app stops
(after the drain), and writes every batch into the buffer, each event numbered with an `id:`
line (`gateway.server.stream_sink`). The client's handler follows the buffer's live tail
(`follow`): when the client goes away, only the following stops. The request's record and its
admission lease are settled when the task ends (`when_done`), not when the handler returns.
A stream whose route could continue it keeps its request with it (`stream_request`): a replica
that finds it orphaned takes it over and continues it (`gateway.server.stream_takeover`,
through `follow`'s `on_orphaned`).

In a stream that carries `id:` lines a heartbeat is `: ping\\n`, with no blank line after it
(contract section 2: openai-python would turn a bare blank line into an empty event), and the
gateway writes no other blank line: every frame it writes ends its event.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import structlog
from aiohttp import web

from gateway.apis import Api
from gateway.errors import StreamLost
from gateway.routing import Route
from gateway.server.app_state import SETTINGS, STORE
from gateway.server.auth import CLIENT
from gateway.server.relay import Relay
from gateway.server.sse_response import SSEResponse
from gateway.server.stream_request import keep_request
from gateway.server.stream_sink import StreamSink, numbered
from gateway.state import (
    CANCELLED,
    COMPLETED,
    FAILED,
    GAP,
    ORPHANED,
    StreamInfo,
    StreamReader,
    StreamWriter,
)
from gateway.streaming import Dialect, make_stream_error

__all__ = [
    "HEARTBEAT",
    "OUTLIVED_BY",
    "RESUMABLE_HEADER",
    "STREAM_ID_HEADER",
    "STREAM_RUNS",
    "Orphaned",
    "ResumableStream",
    "follow",
    "kept_in_background",
    "run_stream",
    "stream_runs",
    "wants_resumable",
    "when_done",
]

RESUMABLE_HEADER = "x-gateway-resumable"
STREAM_ID_HEADER = "x-gateway-stream-id"
#: A heartbeat in a stream with `id:` lines: a comment line, no blank line after it.
HEARTBEAT = b": ping\n"
#: The tasks of the resumable streams the app is producing.
STREAM_RUNS = web.AppKey("stream_runs", set[asyncio.Task[None]])
#: The task a request's work goes on in after its handler returned (a resumable stream's).
OUTLIVED_BY = web.RequestKey("outlived_by", asyncio.Task)
_FINAL_WRITE_TIMEOUT = 5.0
#: Most times one client's stream is handed on after its producer died (its taker, then its
#: taker's taker...): past that its rest is lost.
_TAKEOVERS = 3
#: A stream found orphaned after the given event id -> the reader of its rest (taken over here,
#: or followed from the replica that took it).
Orphaned = Callable[[int], Awaitable[StreamReader]]
_log = structlog.get_logger("gateway.resumable")


def kept_in_background(route: Route, api: Api, body: Mapping[str, Any]) -> bool:
    """A `background: true` request of an API with stored answers that none of the route's
    targets can keep (each would answer it translated)."""
    if not api.stored_answers or body.get("background") is not True:
        return False
    return not any(target.provider.speaks(api) for target in route.targets)


def wants_resumable(request: web.Request, route: Route, background: bool) -> bool:
    """Whether a stream of `route` asked by `request` is resumable (module docstring)."""
    if route.resumable or background:
        return True
    return request.headers.get(RESUMABLE_HEADER, "").strip().lower() == "true"


def when_done(request: web.Request, callback: Callable[[], None]) -> None:
    """Run `callback` now, or when the task the request's work outlives its handler in ends."""
    task = request.get(OUTLIVED_BY)
    if isinstance(task, asyncio.Task) and not task.done():
        task.add_done_callback(lambda _: callback())
    else:
        callback()


async def stream_runs(app: web.Application) -> AsyncIterator[None]:
    """`cleanup_ctx`: the app's resumable streams; those still running when it stops (after
    the drain) are cancelled (`server_shutdown`) and awaited."""
    runs: set[asyncio.Task[None]] = set()
    app[STREAM_RUNS] = runs
    yield
    for task in list(runs):
        task.cancel()
    if runs:
        await asyncio.gather(*runs, return_exceptions=True)


class ResumableStream:
    """Serves one resumable stream (the relay's `Resumable`): see the module."""

    def __init__(self, request: web.Request, api: Api, route: Route, *, named: bool) -> None:
        """`named`: the answer's own id (a translated background response's) finds the
        stream too, for its Responses follow-ups."""
        self._request = request
        self._api = api
        self._route = route
        self._named = named

    async def serve(self, relay: Relay) -> web.StreamResponse:
        request = self._request
        buffers = request.app[STORE].streams
        client = request.get(CLIENT)
        stream_id = secrets.token_urlsafe(24)
        info = StreamInfo(
            None if client is None else client.name, self._api.name, route=self._route.name
        )
        limit = request.app[SETTINGS].limits.max_request_bytes
        kept = keep_request(relay.template, self._route, limit)
        writer = await buffers.create(stream_id, info, kept)
        sink = StreamSink(writer)
        if self._named:

            async def name(answer_id: str) -> None:
                await buffers.name(answer_id, stream_id)

            relay.on_gateway_answer = name
        request[OUTLIVED_BY] = run_stream(request.app, relay, sink, writer)
        record = relay.record
        headers = {
            "x-request-id": record.request_id,
            "request-id": record.request_id,
            STREAM_ID_HEADER: stream_id,
        }
        return await follow(request, buffers.reader(stream_id, 0), relay.dialect, headers, sink)


def run_stream(
    app: web.Application, relay: Relay, sink: StreamSink, writer: StreamWriter
) -> asyncio.Task[None]:
    """Start the task that relays `relay` into `sink` (`writer`'s), owned by the app
    (`STREAM_RUNS`) and cancelled when its stream is."""
    task = asyncio.get_running_loop().create_task(_produce(relay, sink))
    runs = app[STREAM_RUNS]
    runs.add(task)
    task.add_done_callback(_settled(runs))

    def cancel() -> None:
        sink.cancelled()
        task.cancel()

    writer.on_cancel(cancel)
    return task


async def _produce(relay: Relay, sink: StreamSink) -> None:
    """The stream's task: the relay into the buffer, then the buffer's end."""
    status = FAILED
    dialect, record = relay.dialect, relay.record
    try:
        response = await relay.stream_into(sink)
        if response is not sink.response and record.error is not None:
            # An error before the first event: the client still there hears it as a status;
            # the buffer keeps it as the stream's one event, for anyone who resumes.
            sink.early = response
            frame = dialect.error_event(make_stream_error(record.error), relay.tracker)
            await sink.write(relay.redactor.redact_bytes(frame)[0])
        status = COMPLETED if record.error is None else FAILED
    except asyncio.CancelledError:
        status = CANCELLED
        frame = dialect.error_event(make_stream_error(sink.cancel_cause), relay.tracker)
        await sink.write(frame)
        raise
    finally:
        sink.end(status)


def _settled(runs: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    def settled(task: asyncio.Task[None]) -> None:
        runs.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("resumable_stream_failed", exc_info=task.exception())

    return settled


async def follow(
    request: web.Request,
    reader: StreamReader,
    dialect: Dialect,
    headers: dict[str, str],
    sink: StreamSink | None = None,
    on_orphaned: Orphaned | None = None,
) -> web.StreamResponse:
    """Write a buffer's events after the reader's id to the client, following the live tail to
    the stream's end (heartbeats while it is silent). A stream whose producer died
    (`ORPHANED`) is handed to `on_orphaned` (a few times at most: its taker may die too),
    whose reader is followed from there. A stream whose rest is lost (`GAP`, `ORPHANED`
    still) ends with one `stream_lost` error event, never as if it were complete.
    `sink`: the stream's own, when this is its first client (an error before the first event
    is then answered with its status)."""
    client = SSEResponse(
        request,
        heartbeat=request.app[SETTINGS].heartbeat,
        heartbeat_frame=HEARTBEAT,
        headers=headers,
    )
    if sink is not None:
        sink.client_committed = lambda: client.committed
    client.start_heartbeat()
    try:
        data = await reader.next()
        if sink is not None and sink.early is not None and not client.committed:
            return sink.early
        takeovers = 0
        while True:
            while data is not None:
                await client.write(data)
                data = await reader.next()
            if reader.ending != ORPHANED or on_orphaned is None or takeovers == _TAKEOVERS:
                break
            takeovers += 1
            reader = await on_orphaned(reader.last_id)
            data = await reader.next()
        if reader.ending in (GAP, ORPHANED):
            frame = dialect.error_event(make_stream_error(StreamLost()))
            await client.write(numbered(reader.last_id + 1, frame))
    except ConnectionError:
        return client.response
    finally:
        await client.stop_heartbeat()
    with contextlib.suppress(ConnectionError, TimeoutError):
        async with asyncio.timeout(_FINAL_WRITE_TIMEOUT):
            await client.write_eof()
    return client.response
