"""Taking over a resumable stream whose replica died, and continuing its answer.

A client that resumes a stream (`GET /v1/streams/{id}`, or a translated background
response's follow-up) on a replica that finds its producer's lease expired before the stream
ended (`ORPHANED`) hands it here (`take_over`, `follow`'s `on_orphaned`). This replica claims
the stream in the store (`StreamBuffers.take_over`: one taker, however many replicas find it
orphaned at once; the others follow the taker's tail, as they followed the dead producer's)
and, in a task the app owns, goes on producing it, numbering after the last event kept:

- the answer continued on the route's targets by continuation (`Chain.continue_stream`: the
  text so far as prefill, on a target that declares `prefill`, within the route's
  `continuations`), when the stream kept its request (`gateway.server.stream_request`) and
  every event since its first, and the answer is one that prefill can continue (the API's
  `Splice`: plain text, one choice); its events are spliced in (no second role chunk or
  `message_start`) and it ends as any stream does (`[DONE]`, `message_stop`);
- else one `stream_lost` error event (category `stream_interrupted`) ends it - the same one
  for every reader, never a stream that looks complete; and an answer the dead replica had
  relayed to its end, but not ended, is ended (its trailer, when its marker is missing).

The continuation is a request of its own to this replica: one `stream_finished` line and its
metrics (`gateway_continuations_total{route, result}`), under the route's total deadline from
the takeover; the claim itself is logged as `stream_taken_over`.
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from gateway.apis import APIS, OPENAI_CHAT, Api
from gateway.errors import GatewayError, StreamLost
from gateway.observability import RequestRecord
from gateway.routing.continuation import splice_for
from gateway.server.app_state import METRICS, ROUTER, SETTINGS, STORE
from gateway.server.middlewares import REQUEST_ID
from gateway.server.relay import Relay, Unfinished
from gateway.server.resumable import run_stream
from gateway.server.stream_request import KeptRequest
from gateway.server.stream_sink import StreamSink
from gateway.state import COMPLETED, FAILED, StreamBuffers, StreamReader, Takeover
from gateway.streaming import Dialect, SSEDecoder, SSEEvent, Verdict, make_stream_error

__all__ = ["take_over"]

_log = structlog.get_logger("gateway.resumable")
#: Bounds reading back the kept events (a store that stops answering midway: the rest is lost).
_READ_KEPT_TIMEOUT = 10.0


async def take_over(request: web.Request, stream_id: str, after: int) -> StreamReader:
    """`follow`'s `on_orphaned` for `request`, a client of `stream_id` that has read through
    event `after`: the stream taken over here if this replica wins it (its continuation
    started), and the reader of its rest either way."""
    buffers = request.app[STORE].streams
    taken = await buffers.take_over(stream_id, after)
    if taken is not None:
        sink = StreamSink(taken.writer, first_id=taken.last_id + 1)
        dialect = _api_named(taken.info.api).dialect
        try:
            relay = await _continuation(request, buffers, stream_id, taken, sink)
        except BaseException:
            _end_lost(sink, dialect)  # never a claimed stream left live
            raise
        if relay is not None:
            task = run_stream(request.app, relay, sink, taken.writer)
            record = relay.record
            task.add_done_callback(lambda _: record.finish())
        info = taken.info
        _log.info(
            "stream_taken_over",
            route=info.route,
            api=info.api,
            kept_events=taken.last_id,
            continued=relay is not None,
        )
    return buffers.reader(stream_id, after)


async def _continuation(
    request: web.Request,
    buffers: StreamBuffers,
    stream_id: str,
    taken: Takeover,
    sink: StreamSink,
) -> Relay | None:
    """The relay that continues the stream taken over, or None: it was ended here (lost, or
    its answer was whole)."""
    api = _api_named(taken.info.api)
    dialect = api.dialect
    record = RequestRecord(
        request_id=request[REQUEST_ID], endpoint=api.name, metrics=request.app[METRICS]
    )
    kept = KeptRequest.read(taken.request, record.request_id)
    route = None
    if kept is not None:
        try:
            route = request.app[ROUTER].resolve(kept.template.model, kept.api)
        except GatewayError:
            route = None  # this replica's configuration does not route it
    splice = None
    if kept is not None and route is not None and route.name == kept.route:
        splice = splice_for(route, kept.template)
    events = None if splice is None else await _kept_events(request, buffers, stream_id, taken)
    if kept is None or route is None or splice is None or events is None:
        _end_lost(sink, dialect)
        return None
    tracker = dialect.tracker()
    verdict = Verdict.FORWARD
    for event in events:
        verdict = tracker.inspect(event)
    splice.observe(events)
    if verdict in (Verdict.END, Verdict.END_WITH_ERROR):
        sink.end(COMPLETED if verdict is Verdict.END else FAILED)  # it was whole
        return None
    if tracker.complete:
        sink.write_frames((dialect.completion_trailer,))
        sink.end(COMPLETED)
        return None
    record.stream, record.model = True, kept.template.model
    record.bind_route(route.name)
    relay = Relay.for_request(request, record, route, kept.template, api)
    cut = StreamLost("the replica producing this stream stopped before its end")
    relay.unfinished = Unfinished(splice, tracker, cut)
    return relay


async def _kept_events(
    request: web.Request, buffers: StreamBuffers, stream_id: str, taken: Takeover
) -> list[SSEEvent] | None:
    """Every event of the stream up to the last one kept, or None if they are not all kept
    (the oldest were let go, or the store stopped answering)."""
    limit = request.app[SETTINGS].limits.max_event_bytes
    decoder = SSEDecoder(max_event_bytes=limit, keep_dataless=False)
    reader = buffers.reader(stream_id, 0)
    events: list[SSEEvent] = []
    try:
        async with asyncio.timeout(_READ_KEPT_TIMEOUT):
            while reader.last_id < taken.last_id:
                data = await reader.next()
                if data is None:
                    return None
                events += decoder.feed(data)
    except (TimeoutError, GatewayError):
        return None
    return events + decoder.finish()


def _end_lost(sink: StreamSink, dialect: Dialect) -> None:
    """End the stream with one `stream_lost` event (once: an ended stream keeps no more)."""
    sink.write_frames((dialect.error_event(make_stream_error(StreamLost())),))
    sink.end(FAILED)


def _api_named(name: str) -> Api:
    return next((api for api in APIS if api.name == name), OPENAI_CHAT)
