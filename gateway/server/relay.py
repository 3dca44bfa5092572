"""The relay: one client request, served by its route's chain of targets, bound to the
request's context, delivered to the client.

`Relay.stream()` serves `stream: true`: the request's `Chain` opens each attempt's upstream
inside a `ContextAwareStream` (total deadline on the request's `Context`; the target's
first-byte and idle limits on the stream, `_open_stream`) until one yields its first event;
the relay frames the body with `SSEDecoder`, lets the dialect's tracker judge each event, and
writes the events of one upstream read to the client in one write, byte-exact.
A relay may also continue an answer that a replica that died began (`unfinished`: a
resumable stream taken over, `gateway.server.stream_takeover`): the chain's continuation of it
(`Chain.continue_stream`) instead of the chain, its tracker already past the kept events.
`Relay.complete()` serves `stream: false` under the same deadlines, one attempt reading one
whole answer (`_read_answer`).

The error channel is decided by whether headers were committed (contract sections 4-5): before,
an error becomes a real status with the dialect's JSON body; after, exactly one error event and
the end of the response. A cancellation of the handler task is a client that went away (its
transport is gone) or the server shutting down; either way the upstream is closed in `finally`
before the cancellation propagates, and the record says which. A client that goes away is
seen earlier, the moment its connection reads the close (`_client_left`, for streams and whole
answers alike): the upstream is closed in that loop turn, whatever the phase, and its cut is
the client's leaving.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import structlog
from aiohttp import web

from gateway.apis import Api, Splice
from gateway.errors import (
    ClientDisconnected,
    DeadlineExceeded,
    GatewayError,
    RateLimited,
    ServerShutdown,
    UpstreamErrorEvent,
    UpstreamProtocolError,
    UpstreamTruncated,
    WriteStalled,
)
from gateway.observability import RequestRecord
from gateway.providers import Provider, UpstreamRequest, UpstreamResponse
from gateway.redaction import Redactor
from gateway.routing import CallTemplate, Chain, Route, Target
from gateway.server.app_state import REDACTOR, REQUEST_TRACE, SERVER_CONTEXT, SETTINGS
from gateway.server.connection import GatewayRequestHandler, stalled_writing
from gateway.server.sse_response import SSEResponse
from gateway.server.stream_sink import StreamSink
from gateway.streaming import (
    Context,
    ContextAwareStream,
    Dialect,
    SSEDecoder,
    SSEEvent,
    StreamTracker,
    Verdict,
    make_stream_error,
)
from gateway.translation import StreamTranslation

__all__ = ["AnswerKept", "Relay", "RelayLimits", "Resumable", "Unfinished", "error_response"]

#: Told the id an upstream keeps the answer under (an API with stored answers) and that
#: upstream's name, before the client sees the answer: a follow-up may come at once.
AnswerKept = Callable[[str, str], Awaitable[None]]


class Resumable(Protocol):
    """How a resumable stream is served (`gateway.server.resumable`): the relay is run into
    a `StreamSink` by a task of the app's, and the client follows the stream's buffer."""

    async def serve(self, relay: Relay) -> web.StreamResponse: ...


_log = structlog.get_logger("gateway.relay")
_FINAL_WRITE_TIMEOUT = 5.0  # bounds the last frames to a client that stopped reading


@dataclass(frozen=True, slots=True)
class Unfinished:
    """An answer a replica that died began, to continue: `splice` and `tracker` have seen
    every event kept of it; `cut` is what ends the stream if it cannot be continued."""

    splice: Splice
    tracker: StreamTracker
    cut: GatewayError


@dataclass(frozen=True, slots=True)
class RelayLimits:
    heartbeat: float | None
    max_event_bytes: int
    max_response_bytes: int


class Relay:
    """Runs one client request over its route's chain of targets; use once.

    The relay is the chain's `ChainObserver`: each attempt's target and result go to the
    request's record. `_provider`, `_attempt` (its stream) and `_call` are those of the current
    attempt (one at a time; `_call` until it is sent).
    """

    __slots__ = (
        "_attempt",
        "_attempt_settled",
        "_call",
        "_chain",
        "_ctx",
        "_dialect",
        "_left",
        "_limits",
        "_on_answer",
        "_parent",
        "_phase",
        "_provider",
        "_record",
        "_redactor",
        "_request",
        "_sink",
        "_tracker",
        "_translated",
        "_upstream",
        "on_gateway_answer",
        "resumable",
        "unfinished",
    )

    def __init__(
        self,
        request: web.Request,
        record: RequestRecord,
        route: Route,
        template: CallTemplate,
        dialect: Dialect,
        limits: RelayLimits,
        parent: Context,
        redactor: Redactor,
        on_answer: AnswerKept | None = None,
    ) -> None:
        """`parent` is the server's context: the request's own (with the total deadline) is
        its child, so ending the server's context ends this request's stream too. `redactor`
        removes the gateway's secrets from everything relayed. `on_answer` hears of the id
        the upstream keeps the answer under, if it says one."""
        self._request = request
        self._redactor = redactor
        self._parent = parent
        self._record = record
        trace = request.get(REQUEST_TRACE)  # traced: each upstream call is a span too
        observer = self if trace is None else trace.observe(self, record, template)
        self._chain = Chain(route, template, observer)
        self._dialect = dialect
        self._provider: Provider = route.targets[0].provider
        self._call: UpstreamRequest | None = None
        self._attempt: ContextAwareStream[Any] | None = None
        self._limits = limits
        self._phase = "connecting"
        self._attempt_settled = True  # nothing to settle until an attempt starts
        self._tracker: StreamTracker | None = None  # the stream's, for `stream: true`
        self._on_answer = on_answer
        #: The client is known gone (`_client_left`); its handler is being cancelled.
        self._left = False
        #: The current attempt's response while its body is read (`_client_left` aborts it).
        self._upstream: UpstreamResponse | None = None
        #: The request's context while an answer is sought (`_client_left` ends it when no
        #: response is open yet).
        self._ctx: Context | None = None
        #: The current attempt is a translated call: its answer's ids are the gateway's own,
        #: which no upstream keeps (`on_answer` does not hear of them).
        self._translated = False
        #: Set for a resumable stream (`gateway.server.resumable`): `stream()` serves it so.
        self.resumable: Resumable | None = None
        #: Told the id a translated answer's events give it (the gateway's own, kept by the
        #: gateway in a resumable stream's buffer).
        self.on_gateway_answer: Callable[[str], Awaitable[None]] | None = None
        self._sink: StreamSink | None = None  # where a resumable stream is written
        #: Set to continue an answer begun elsewhere (`stream_into` then continues it).
        self.unfinished: Unfinished | None = None

    @classmethod
    def for_request(
        cls,
        request: web.Request,
        record: RequestRecord,
        route: Route,
        template: CallTemplate,
        api: Api,
        on_answer: AnswerKept | None = None,
    ) -> Relay:
        """The relay of `request` in `api`, under the app's settings, context and redactor."""
        settings = request.app[SETTINGS]
        limits = RelayLimits(
            heartbeat=settings.heartbeat,
            max_event_bytes=settings.limits.max_event_bytes,
            max_response_bytes=settings.limits.max_response_bytes,
        )
        return cls(
            request,
            record,
            route,
            template,
            api.dialect,
            limits,
            request.app[SERVER_CONTEXT],
            request.app[REDACTOR],
            on_answer,
        )

    def _settle_attempt(self, result: str) -> None:
        """Record how the current upstream call's opening phase ended (once): `ok` or an
        error code.

        Called with the translated error, after the stream's scope turned an interrupt into
        its cause, so a deadline is counted as the timeout it was, not as a cancellation.
        """
        if not self._attempt_settled:
            self._attempt_settled = True
            self._record.attempt(self._provider.name, result)

    # --- ChainObserver --------------------------------------------------------------------------

    def attempt_started(self, target: Target) -> None:
        tracker = self._tracker
        if tracker is not None:
            # Each call's usage is its own: the one before (a continued stream's) is counted
            # for its upstream, and this call's judged by whether the gateway asked for it.
            self._count_usage(tracker)
            template = self._chain.template
            tracker.unasked_usage = template.usage_fields(target) is not None
        self._provider = target.provider
        self._attempt_settled = False
        if self._phase != "streaming":
            self._phase = "connecting"
        model = target.upstream_model(self._chain.template.model)
        self._record.answering(target.provider.name, model)

    def attempt_failed(self, target: Target, error: GatewayError) -> None:
        self._settle_attempt(error.code)

    def retrying(self, target: Target, error: GatewayError, delay: float) -> None:
        if self._phase != "streaming":
            self._phase = "backoff"
        self._record.retried(target.provider.name, type(error).code)
        _log.info(
            "upstream_retry",
            upstream=target.provider.name,
            code=error.code,
            delay_ms=round(delay * 1000, 1),
        )

    def failing_over(self, target: Target, reason: str) -> None:
        self._record.failed_over(reason)
        _log.info("upstream_failover", upstream=target.provider.name, code=reason)

    def continuing(self, target: Target, result: str, error: GatewayError) -> None:
        self._record.continued(result)
        _log.info(
            "stream_continuation",
            result=result,
            upstream=target.provider.name,
            upstream_model=target.upstream_model(self._chain.template.model),
            code=error.code,  # what cut the stream being continued
        )

    def request_sent(self) -> None:
        """The current attempt's request is on its way: its first-byte clock starts now."""
        if self._phase != "streaming":
            self._phase = "waiting_first_byte"
        if self._attempt is not None:
            self._attempt.restart_first_byte_clock()

    # --- stream: true ---------------------------------------------------------------------------

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    @property
    def record(self) -> RequestRecord:
        return self._record

    @property
    def template(self) -> CallTemplate:
        """The client's request as its targets get it."""
        return self._chain.template

    @property
    def tracker(self) -> StreamTracker | None:
        """The stream's tracker, once `stream()` started."""
        return self._tracker

    @property
    def redactor(self) -> Redactor:
        return self._redactor

    async def stream(self) -> web.StreamResponse:
        if self.resumable is not None:
            return await self.resumable.serve(self)
        record = self._record
        client = SSEResponse(
            self._request,
            heartbeat=self._limits.heartbeat,
            heartbeat_frame=self._dialect.heartbeat,
            headers={"x-request-id": record.request_id, "request-id": record.request_id},
        )
        return await self._stream(client)

    async def stream_into(self, sink: StreamSink) -> web.StreamResponse:
        """Relay the stream into a resumable stream's buffer (run by a task of the app's:
        the client follows the buffer); `sink.response`, or the error answered before the
        first event."""
        self._sink = sink
        return await self._stream(sink)

    async def _stream(self, client: SSEResponse | StreamSink) -> web.StreamResponse:
        record, dialect = self._record, self._dialect
        ctx = self._request_context()
        # Comment-only and field-only blocks (upstream keep-alives) are dropped by the decoder:
        # they are not relayed and do not reset the first-byte or idle clocks.
        open_stream = functools.partial(self._open_stream, ctx)
        unfinished = self.unfinished
        if unfinished is None:
            tracker = self._tracker = dialect.tracker()
            upstream = self._chain.stream(ctx, open_stream, dialect.opening)
        else:
            tracker = self._tracker = unfinished.tracker
            # What the kept events said was counted and told by the replica that relayed them.
            tracker.usage, tracker.answer_id, tracker.skipped = None, None, 0
            upstream = self._chain.continue_stream(
                ctx, open_stream, unfinished.splice, unfinished.cut, dialect.opening
            )
        client.start_heartbeat()
        record.stream_started()
        error: GatewayError | None = None
        watched = self._watch_client()
        try:
            await self._pump(upstream, tracker, client)
        except GatewayError as exc:
            error = exc
            self._settle_attempt(exc.code)
            if self._left:
                # Recorded now: the handler's cancellation may land in the clean-up below.
                record.fail(self._client_gone())
        except asyncio.CancelledError:
            self._cancelled()
            raise
        except ConnectionError:
            # A write found the client gone (or cut for not reading) before aiohttp cancelled
            # us.
            record.fail(self._client_gone())
            return client.response
        finally:
            if watched is not None:
                watched.on_client_gone(None)
            try:
                await client.stop_heartbeat()
                await upstream.aclose()
            finally:
                # Recorded even when the clean-up above is itself cancelled (a second
                # cancellation): the record's bytes must be what reached the client, or the
                # log line would disagree with the relayed-bytes counter.
                ctx.close()
                record.bytes = client.bytes_written
                record.skipped_events = tracker.skipped
                self._count_usage(tracker)
        if error is not None and self._left:
            # The upstream's read failed because it was aborted for the client that left, or
            # failed as the client left: either way the client's leaving is the outcome
            # (recorded above).
            return client.response
        self._chain.finish(error)  # how the answering target's answer ended
        if error is not None:
            record.fail(error)
            if not client.committed:
                return self._error_response(error)
            frame = dialect.error_event(make_stream_error(error), tracker)
            await self._finish(client, self._redactor.redact_bytes(frame)[0])
        else:
            await self._finish(client, b"")
        record.bytes = client.bytes_written
        record.status = 200
        return client.response

    def _count_usage(self, tracker: StreamTracker) -> None:
        """Add the usage the current call reported to the record, for its upstream (once:
        the tracker starts the next call without it)."""
        if tracker.usage is not None:
            # A resource call (a resumed background stream) re-reads an answer made before:
            # its tokens were the creating call's.
            if not self._chain.template.resource_call:
                self._record.add_tokens(self._provider.name, self._dialect.tokens(tracker.usage))
            tracker.usage = None

    async def _pump(
        self,
        upstream: AsyncIterator[list[SSEEvent]],
        tracker: StreamTracker,
        client: SSEResponse | StreamSink,
    ) -> None:
        """Relay events until the upstream's terminal marker or end; raise if it was cut.

        The per-read hot path: one verdict per event, one write per upstream read.
        """
        record = self._record
        inspect = tracker.inspect
        # Only complete events are written, and no secret's piece holds a line break: each
        # fragment lies inside one event, whatever the batch, and redacting keeps framing.
        redact = self._redactor.redact_bytes if self._redactor else None
        sink = self._sink
        forward, skip, drop = Verdict.FORWARD, Verdict.SKIP, Verdict.DROP
        verdict = forward
        async for events in upstream:
            frames: list[bytes] = []
            append = frames.append
            for event in events:
                verdict = inspect(event)
                if verdict is forward:
                    append(event.raw)
                    continue
                if verdict is skip:
                    if tracker.skipped == 1:
                        _log.warning("upstream_event_skipped", reason="malformed_data")
                    continue
                if verdict is drop:
                    continue  # by design (what the gateway asked for): not malformed
                append(event.raw)  # END or END_WITH_ERROR: the terminal event
                break
            if frames and sink is not None:
                self._phase = "streaming"
                events.clear()
                if tracker.answer_id is not None:
                    await self._take_answer_id(tracker)
                record.relayed(len(frames), sink.write_frames(self._redacted(frames)))
            elif frames:
                self._phase = "streaming"
                data = frames[0] if len(frames) == 1 else b"".join(frames)
                if redact is not None:
                    data, redactions = redact(data)
                    if redactions:
                        record.redacted("stream", redactions)
                count = len(frames)
                # The batch is in `data` now: let its events go while the write waits on a
                # slow client (they would double what a stalled stream holds).
                events.clear()
                frames.clear()
                if tracker.answer_id is not None:
                    await self._take_answer_id(tracker)
                await client.write(data)
                # Counted once written: a write may wait on a slow client (`SSEResponse`), and
                # a client that leaves meanwhile was never given these bytes.
                record.relayed(count, len(data))
            if verdict is not forward and verdict is not skip and verdict is not drop:
                break
        if verdict is Verdict.END_WITH_ERROR:
            record.fail(UpstreamErrorEvent())

        elif verdict is not Verdict.END:
            if not tracker.complete:
                raise UpstreamTruncated()
            await client.write(self._dialect.completion_trailer)

    async def _take_answer_id(self, tracker: StreamTracker) -> None:
        """Tell who keeps it the id this answer's events gave it: the upstream's owner map,
        or the gateway's own buffer for a translated answer it keeps (a resumable stream)."""
        answer_id = tracker.answer_id
        if answer_id is None:
            return
        tracker.answer_id = None
        if not self._translated:
            if self._on_answer is not None:
                await self._on_answer(answer_id, self._provider.name)
        elif self.on_gateway_answer is not None:
            await self.on_gateway_answer(answer_id)

    def _redacted(self, frames: list[bytes]) -> list[bytes]:
        """`frames` without the gateway's secrets, one by one (a resumable stream keeps
        each event on its own)."""
        if not self._redactor:
            return frames
        kept = []
        for frame in frames:
            frame, redactions = self._redactor.redact_bytes(frame)
            if redactions:
                self._record.redacted("stream", redactions)
            kept.append(frame)
        return kept

    async def _finish(self, client: SSEResponse | StreamSink, frame: bytes) -> None:
        """Write the last frame and end the response, bounded for a client that stalls (a
        timer is armed only when the writes could wait on the client)."""
        with contextlib.suppress(ConnectionError, TimeoutError):
            if client.ends_at_once(len(frame)):
                await _end(client, frame)
            else:
                async with asyncio.timeout(_FINAL_WRITE_TIMEOUT):
                    await _end(client, frame)

    async def _events(
        self, ctx: Context, decoder: SSEDecoder, translator: StreamTranslation | None
    ) -> AsyncIterator[list[SSEEvent]]:
        """The upstream's complete events, one list per read that completed any - as the
        client's API says them, through `translator`, for a call in another API.

        When the body ends - cleanly or with an error - a trailing CR still completes a line, so
        those events are relayed before the end; a body that ends inside an event was cut,
        whatever came before. Only a clean end is a translated stream's end (`finish`).
        """
        # The body's reads are iterated here, not through `_body`: one generator less per
        # stream (its frame, and a hop per read).
        response = await self._open(ctx)
        chunks = response.chunks()
        failure: GatewayError | None = None
        try:
            try:
                async for chunk in chunks:
                    events = decoder.feed(chunk)
                    del chunk  # framed now: not held while the client's write waits
                    if events and translator is not None:
                        events = translator.feed(events)
                    if events:
                        yield events
            except GatewayError as exc:
                failure = self._read_failure(exc)
            events = decoder.finish()
            if translator is not None:
                events = translator.feed(events) if events else []
                if failure is None and not decoder.has_partial_event:
                    events += translator.finish()
            if events:
                yield events
            if failure is not None:
                raise failure
            if decoder.has_partial_event:
                raise UpstreamTruncated("the upstream ended the stream in the middle of an event")
        finally:
            await self._release(response, chunks)

    def _open_stream(
        self, ctx: Context, target: Target, call: UpstreamRequest
    ) -> ContextAwareStream[list[SSEEvent]]:
        """One attempt's event stream (not yet read): its own decoder and phase limits."""
        # Comment-only and field-only blocks (upstream keep-alives) are dropped by the decoder:
        # they are not relayed and do not reset the first-byte or idle clocks.
        if self._left:  # no new call for a client that left: its cancellation is on its way
            raise ClientDisconnected(phase=self._phase)
        limit = self._limits.max_event_bytes
        decoder = SSEDecoder(max_event_bytes=limit, keep_dataless=False)
        translated = call.translated
        translator = None if translated is None else translated.stream(max_event_bytes=limit)
        self._translated = translated is not None
        upstream = ContextAwareStream(
            ctx,
            self._events(ctx, decoder, translator),
            call.timeouts,
            connecting=True,
            marks_content=True,  # the chain says when the answer began (`Chain.stream`)
        )
        self._call, self._attempt = call, upstream
        return upstream

    # --- stream: false --------------------------------------------------------------------------

    async def complete(self) -> web.StreamResponse:
        record = self._record
        ctx = self._request_context()
        watched = self._watch_client()
        try:
            _, (body, first_at, answer) = await self._chain.run(
                ctx, functools.partial(self._read_answer, ctx)
            )
        except GatewayError as exc:
            self._settle_attempt(exc.code)
            if self._left:
                # The call was cut for the client that left (`_client_left`): its leaving is
                # the outcome, and the error is answered to nobody (nor recorded as answered).
                record.fail(self._client_gone())
                return error_response(self._dialect, exc, record.request_id, self._redactor)
            record.fail(exc)
            return self._error_response(exc)
        except asyncio.CancelledError:
            self._cancelled()
            raise
        finally:
            if watched is not None:
                watched.on_client_gone(None)
            ctx.close()
        record.first_event_at = first_at
        if isinstance(answer, dict) and not self._chain.template.resource_call:
            record.add_tokens(self._provider.name, self._dialect.tokens(answer.get("usage")))
        if self._on_answer is not None and not self._translated:
            answer_id = self._dialect.answer_id(answer)
            if answer_id is not None:
                await self._on_answer(answer_id, self._provider.name)
        body, redactions = self._redactor.redact_bytes(body)
        if redactions:
            record.redacted("body", redactions)
        record.bytes = len(body)
        record.status = 200
        return web.Response(
            body=body,
            content_type="application/json",
            headers={"x-request-id": record.request_id},
        )

    async def _read_answer(
        self, ctx: Context, target: Target, call: UpstreamRequest
    ) -> tuple[bytes, float, Any]:
        """One attempt of `stream: false`: the whole answer (bytes, when its first byte came,
        its JSON), or the error that ended the attempt.

        A refused answer is let go before its error is raised, and that error is raised
        outside any `except` (no `__context__`): the record and the chain keep the error,
        and a traceback whose frames held the body (or `json`'s decoded copy of it) would
        keep up to `max_response_bytes` alive as long as they do.
        """
        upstream = ContextAwareStream(ctx, self._body(ctx), call.timeouts, connecting=True)
        self._call, self._attempt = call, upstream
        translated = call.translated
        self._translated = translated is not None
        try:
            body, first_at = await self._collect(upstream)
        finally:
            await upstream.aclose()
        if body is None:
            raise UpstreamProtocolError("the upstream's answer exceeded the size limit")
        try:
            answer, valid = json.loads(body), True
        except ValueError:
            answer, valid = None, False
        if not valid:
            del body
            raise UpstreamProtocolError("the upstream's answer was not valid JSON")
        if translated is not None:
            if not isinstance(answer, dict):
                raise UpstreamProtocolError("the upstream's answer was not a JSON object")
            answer = translated.answer(answer)
            return orjson.dumps(answer), first_at or time.monotonic(), answer
        return bytes(body), first_at or time.monotonic(), answer

    async def _collect(self, upstream: AsyncIterator[bytes]) -> tuple[bytearray | None, float]:
        """The answer's bytes and when the first came, or None as soon as they would pass
        `max_response_bytes`: counted on what arrives (decompressed, read by read), so no
        more than the limit is ever held, and what came is dropped at once (the rest is
        not read)."""
        limit = self._limits.max_response_bytes
        body = bytearray()
        first_at = 0.0
        async for chunk in upstream:
            if not first_at and chunk:
                first_at = time.monotonic()
                self._phase = "reading_body"
            if len(body) + len(chunk) > limit:
                return None, first_at
            body += chunk
        return body, first_at

    async def _body(self, ctx: Context) -> AsyncGenerator[bytes, None]:
        """The current attempt's body reads; the response is released however iteration
        ends."""
        response = await self._open(ctx)
        chunks = response.chunks()
        try:
            try:
                async for chunk in chunks:
                    yield chunk
            except GatewayError as exc:
                raise self._read_failure(exc) from None
        finally:
            await self._release(response, chunks)

    async def _open(self, ctx: Context) -> UpstreamResponse:
        """Send the current attempt's call; its 2xx response."""
        # The call is handed over, not kept in `_call`: its body, the whole request
        # serialised, is not needed once sent, and a stream would hold it as long as it runs.
        call, self._call = self._call, None
        assert call is not None
        response = self._upstream = await self._provider.open(ctx, call)
        self._settle_attempt("ok")
        if self._left:
            response.abort()  # the client left as the answer's head arrived
        return response

    def _read_failure(self, error: GatewayError) -> GatewayError:
        """What a failed read of the current answer's body ended the attempt with: a read
        cut by `_client_left`'s abort is the client's leaving, not the target's fault (the
        chain stops there, and no circuit hears of it)."""
        return ClientDisconnected(phase=self._phase) if self._left else error

    async def _release(self, response: UpstreamResponse, chunks: AsyncIterator[bytes]) -> None:
        """Close an attempt's body reads, then its response."""
        self._upstream = None
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        await response.aclose()

    def _request_context(self) -> Context:
        total = self._chain.route.timeouts_for(self._chain.template.overrides).total
        self._ctx = self._parent.child(
            total, deadline_error=functools.partial(DeadlineExceeded, limit=total)
        )
        return self._ctx

    # --- errors ---------------------------------------------------------------------------------

    def _cancelled(self) -> None:
        cause = self._cancel_cause()
        self._record.fail(cause)
        self._settle_attempt(cause.code)

    def _cancel_cause(self) -> GatewayError:
        """Why the handler was cancelled: the client left (or stopped reading), or the server
        is stopping; a resumable stream's task: its client cancelled it, or the server is
        stopping."""
        if self._sink is not None:
            return self._sink.cancel_cause
        if self._request.transport is None or self._request.transport.is_closing():
            return self._client_gone()
        return ServerShutdown()

    def _watch_client(self) -> GatewayRequestHandler | None:
        """Have `_client_left` called the moment the client is gone; the connection watched
        (to be let go of: `on_client_gone(None)`), or None. A resumable stream's relay
        (`_sink`) outlives its client: it is not watched."""
        protocol = self._request.protocol
        if self._sink is not None or not isinstance(protocol, GatewayRequestHandler):
            return None
        protocol.on_client_gone(self._client_left)
        return protocol

    def _client_left(self) -> None:
        """The client's connection is gone (`GatewayRequestHandler.on_client_gone`): the
        upstream is closed now, in the loop turn that saw the client go, where the handler's
        cancellation would close it a turn or two later - milliseconds on a busy loop.

        An answer being read (a stream's or a whole answer's body) is aborted here. A call
        with no response yet (connecting, waiting for the head, a retry's backoff) ends with
        the request's context, ended here with the client's leaving: the transport closes a
        connection waiting for its head at once (`HTTPClient.send`'s `ctx`), the call is
        interrupted, and the chain stops on it (`ClientDisconnected`: no retry, no verdict).
        """
        self._left = True
        upstream = self._upstream
        if upstream is not None:
            upstream.abort()
        elif self._ctx is not None:
            self._ctx.cancel(ClientDisconnected(phase=self._phase))

    def _client_gone(self) -> GatewayError:
        """The client's connection is gone: it left, or it was cut for not reading."""
        stall = stalled_writing(self._request)
        if stall is not None:
            return WriteStalled(limit=stall)
        return ClientDisconnected(phase=self._phase)

    def _error_response(self, error: GatewayError) -> web.Response:
        response = error_response(self._dialect, error, self._record.request_id, self._redactor)
        self._record.answered(response)
        return response


async def _end(client: SSEResponse | StreamSink, frame: bytes) -> None:
    if frame:
        await client.write(frame)
    await client.write_eof()


def error_response(
    dialect: Dialect, error: GatewayError, request_id: str, redactor: Redactor | None = None
) -> web.Response:
    """An error answered with a real HTTP status and the dialect's JSON body (with no
    fragment of a secret, for an error whose text came from an upstream: `redactor`)."""
    headers = {"x-request-id": request_id}
    if error.client_should_retry is not None:
        headers["x-should-retry"] = "true" if error.client_should_retry else "false"
    body = dialect.error_body(make_stream_error(error))
    if redactor is not None:
        body = redactor.redact_bytes(body)[0]
    if isinstance(error, RateLimited) and error.retry_after:
        headers["Retry-After"] = error.retry_after
    return web.Response(
        status=error.http_status,
        body=body,
        content_type="application/json",
        headers=headers,
    )
