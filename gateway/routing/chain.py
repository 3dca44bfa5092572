"""`Chain`: one request walking its route's targets until one of them answers.

The server hands a `Chain` the client's request (`CallTemplate`: the body, the client's model
name, the request's timeout overrides) and an *attempt*: a coroutine that makes one upstream
call to one target and returns what the server needs from it. `run()` calls the attempt for
the targets in order and returns the first answer with the target that gave it.

`stream()` is `run()` for an event stream (contract section 2): an attempt succeeds once the
upstream's first event has arrived - until then the client has seen nothing of it (heartbeats
are the gateway's own), so any target may still be tried by the route's policy. Its events are
relayed as they come, the answer's preamble too (a role chunk, `message_start`, a ping: what
the client's dialect judges `Opening.PREAMBLE`). Until the answer has begun - its first event
that carries content - a failure, a cut, a stall, the first-token deadline or the upstream's
own error event still restarts the request on the route's other targets (that one last): of
the restarted answer's preamble, what the client already has (an event of the same name) is
dropped, so the client reads one seamless stream with one preamble. Then the events of that
one upstream as they come - and, on a route that can continue streams, an answer that dies
mid-way is continued by a target that takes assistant prefill (`continuation`, `splice`): its
events are spliced in, or, when no continuation can be made, the stream ends as it would have,
with the failure that cut it.

Invariants:
- each call holds a `CallLease` of its target's backend (`gateway.state`: the circuit's
  permission and a slot); a target whose circuit is open (`CircuitOpen`) or that is full is
  skipped, never waited for; every slot taken is given back when its call is over (a failed
  attempt at once; the answering one when the caller is done);
- every call's verdict is reported on its lease: a success when it answered (its first
  content, for a stream), a failure when it failed by the target's fault (before its first
  content, or later: a cut, a stall), else abandoned; a breaker only reorders the chain, it
  never turns a request away by itself;
- the `ChainObserver` hears of every attempt (its target when it starts, its error if it
  fails), so the request's record knows which upstream answered;
- cancellation (the client left) is never caught: it propagates through `run()` and `stream()`
  after the current call's connection was closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from gateway.apis import Splice
from gateway.errors import (
    GatewayError,
    GatewayOverloaded,
    UpstreamErrorEvent,
    UpstreamProtocolError,
    UpstreamTruncated,
)
from gateway.providers import UpstreamRequest
from gateway.routing.continuation import (
    EXHAUSTED,
    OK,
    UNSOUND,
    Continuation,
    continuable,
    result_of,
    splice_for,
)
from gateway.routing.policy import Decision, hurts_target
from gateway.routing.router import Route, Target
from gateway.routing.template import CallTemplate
from gateway.state import CallLease, CircuitOpen
from gateway.streaming import Context, ContextAwareStream, Opening, SSEEvent

__all__ = ["Chain", "ChainObserver", "OpenStream"]

T = TypeVar("T")

#: One upstream call to one target: returns what the caller needs, or raises a `GatewayError`.
Attempt = Callable[[Target, UpstreamRequest], Awaitable[T]]
#: Opens one target's event stream (not yet read): the caller's framing and phase limits.
OpenStream = Callable[[Target, UpstreamRequest], ContextAwareStream[list[SSEEvent]]]
#: What an event is to an answer that has not begun (the client's dialect's `opening`).
OpeningOf = Callable[[SSEEvent], Opening]
#: A stream whose answer has begun, and its events so far (the held preamble included).
_Opened = tuple[ContextAwareStream[list[SSEEvent]], list[SSEEvent]]


class ChainObserver(Protocol):
    """What the chain reports as it goes (the server records it: metrics and the log line)."""

    def attempt_started(self, target: Target) -> None:
        """A call to `target` begins."""

    def attempt_failed(self, target: Target, error: GatewayError) -> None:
        """The call to `target` failed before it answered."""

    def retrying(self, target: Target, error: GatewayError, delay: float) -> None:
        """`target` is tried again after `delay` seconds, because of `error`."""

    def failing_over(self, target: Target, reason: str) -> None:
        """The request leaves `target` for the next one; `reason` is an error code."""

    def continuing(self, target: Target, result: str, error: GatewayError) -> None:
        """A continuation of the stream `error` cut, on `target`, ended with `result`."""

    def request_sent(self) -> None:
        """The current call's request has been written to its upstream (the call's
        `on_sent`)."""


class Chain:
    """Runs one request over one route's targets; use once."""

    __slots__ = ("_observer", "_rng", "answering", "kept", "route", "template")

    def __init__(
        self,
        route: Route,
        template: CallTemplate,
        observer: ChainObserver,
        rng: random.Random | None = None,
    ) -> None:
        self.route = route
        self.template = template
        self._observer = observer
        #: Made at the first retry: a `Random` holds 2.5 KiB of state, and most requests
        #: never wait to retry.
        self._rng = rng
        #: The target whose answer is being read (`run(keep=True)`), until `finish()`.
        self.answering: Target | None = None
        #: The lease of the latest answer kept (`run(keep=True)`): its slot is the caller's to
        #: `release()` when its use of the answer is over; `finish()` tells its verdict.
        self.kept: CallLease | None = None

    def finish(self, error: GatewayError | None) -> None:
        """How the answer being read ended: well (None), or with `error` (a cut, a stall...),
        which counts against its target when it is the target's fault. Once; not at all when
        the request ended for its own reasons (the client left)."""
        target, self.answering = self.answering, None
        if target is None:
            return
        assert self.kept is not None  # kept with `answering`
        if error is None:
            self.kept.succeeded()
        elif hurts_target(error):
            self.kept.failed()

    async def run(
        self, ctx: Context, attempt: Attempt[T], *, keep: bool = False
    ) -> tuple[Target, T]:
        """The first answer of the route's targets, with the target that gave it.

        Each target is tried as the route's `FailurePolicy` says: again after a wait, or the
        next one at once, or not at all (the error is raised). A target whose circuit is open
        is skipped; a pool's deployments are tried in its strategy's order, each once but the
        last, before the next target. If that leaves no call to make, those targets are called
        anyway, in order: a breaker decides where a request goes, it never turns one away by
        itself. When every target failed, the last error of a call is raised (or, if no call
        could be made, why not). With `keep`, the answering call's slot stays taken: the
        caller gives it back (`chain.kept.release()`) when its use of the answer is over.
        """
        walk = _Walk()
        targets = self.route.targets
        for index, entry in enumerate(targets):
            members = entry.members()  # a pool's deployments, in its strategy's order
            for number, target in enumerate(members):
                last = number + 1 == len(members)
                try:
                    return target, await self._on_target(ctx, target, attempt, keep, walk, last)
                except _Skipped as skipped:
                    reason = skipped.reason
                except _Exhausted as exhausted:
                    reason = type(exhausted.error).code
                if index + 1 < len(targets) or not last:
                    self._observer.failing_over(target, reason)
        if walk.failure is None:
            walk.last_resort = True
            for target in walk.open_circuits:
                with contextlib.suppress(_Skipped, _Exhausted):
                    return target, await self._on_target(ctx, target, attempt, keep, walk)
        error = walk.failure or walk.refusal
        assert error is not None  # a route has at least one target
        raise error

    async def _on_target(
        self,
        ctx: Context,
        target: Target,
        attempt: Attempt[T],
        keep: bool,
        walk: _Walk,
        retries: bool = True,
    ) -> T:
        """`target`'s answer, after as many attempts as the policy allows (one without
        `retries`: a pool's deployment before its last moves on to the next at once).

        Raises `_Skipped` (no call made), `_Exhausted` (the request should fail over), or the
        error itself when the policy says to stop; `walk` keeps what the caller needs to know.
        """
        policy = self.route.policy
        for number in itertools.count(1):
            lease = await walk.admit(target)
            try:
                value = await self._call(target, lease, attempt, keep)
            except GatewayError as error:
                decision = policy.decide(error)
                if decision is Decision.STOP:
                    raise
                walk.failure = error
                retrying = retries and decision is Decision.RETRY
                delay = self._retry_delay(ctx, error, number) if retrying else None
                if delay is None:
                    raise _Exhausted(error) from None
                self._observer.retrying(target, error, delay)
                await _pause(ctx, delay)
                continue
            return value
        raise AssertionError("unreachable")  # pragma: no cover - itertools.count never ends

    async def _call(
        self,
        target: Target,
        lease: CallLease,
        attempt: Attempt[T],
        keep: bool,
        body: Any | None = None,
    ) -> T:
        """One call to `target` (with `body`, default the client's) on `lease`: its circuit's
        permission and slot. The lease hears how it went; its slot is given back unless
        kept."""
        try:
            self._observer.attempt_started(target)
            call = self.template.for_target(
                self.route, target, body, on_sent=self._observer.request_sent
            )
            value = await attempt(target, call)
        except GatewayError as error:
            lease.release()
            if hurts_target(error):
                lease.failed()
            else:
                lease.abandoned()
            self._observer.attempt_failed(target, error)
            raise
        except BaseException:
            lease.release()
            lease.abandoned()
            raise
        if keep:
            lease.answered()  # how the answer ends is reported by `finish()`
            self.answering, self.kept = target, lease
        else:
            lease.succeeded()
            lease.release()
        return value

    def _retry_delay(self, ctx: Context, error: GatewayError, number: int) -> float | None:
        """The wait before call `number + 1` to the same target, or None: no retry (attempts
        spent, a hint too long, or a wait that would outlast the request's deadline)."""
        retry = self.route.policy.retry
        if number >= retry.attempts:
            return None
        if self._rng is None:
            self._rng = random.Random()
        delay = retry.delay(error, number, self._rng)
        remaining = ctx.remaining()
        if delay is None or (remaining is not None and delay >= remaining):
            return None
        return delay

    def stream(
        self, ctx: Context, open_stream: OpenStream, opening: OpeningOf | None = None
    ) -> AsyncGenerator[list[SSEEvent], None]:
        """The events of the first target whose answer begins (`opening` judges the events
        before; None: the first event begins it), read by read; when that stream dies later
        and the route can continue it, the events of its continuation follow, spliced in
        (`Continuation`)."""
        splice = splice_for(self.route, self.template)
        if splice is None:
            return self._stream(ctx, open_stream, opening)
        attempt = functools.partial(_opened, open_stream, opening)
        return self._spliced_stream(ctx, attempt, splice, None, open_stream, opening)

    async def _begin(
        self, ctx: Context, open_stream: OpenStream, opening: OpeningOf | None
    ) -> AsyncGenerator[list[SSEEvent] | _Begun, None]:
        """The answer's opening: the preamble's reads as they come, then one `_Begun` (the
        answering stream, kept, and its read that began the answer) - or, when the chain's
        last word is an upstream's own error before any content, its events (nowhere is left
        to try: it reaches the client as it said it) and no `_Begun`. A failure before the
        content restarts the request (`_restart`)."""
        target, (upstream, events) = await self.run(
            ctx, functools.partial(_first_events, open_stream), keep=True
        )
        handed = False
        relayed: set[str | None] = set()  # the names of the preamble events the client has
        size = 0
        try:
            while True:
                said = Opening.CONTENT if opening is None else _first_word(opening, events)
                if said is Opening.CONTENT:
                    upstream.content_arrived()
                    handed = True
                    yield _Begun(target, upstream, events)
                    return
                size += sum(len(event.raw) for event in events)
                failure = _preamble_failure(said, events, size)
                if failure is None:
                    relayed.update(event.event for event in events)
                    yield events
                    try:
                        events = await upstream.__anext__()
                    except StopAsyncIteration:
                        failure = UpstreamTruncated()
                    except GatewayError as exc:
                        failure = exc
                    else:
                        continue
                await upstream.aclose()
                self._let_go()
                self.finish(failure)
                if self.route.policy.decide(failure) is Decision.STOP or ctx.done():
                    raise failure
                restarted = await self._restart(ctx, open_stream, opening, target, failure)
                if isinstance(restarted, list):  # the last word: an upstream's own error
                    yield _unseen(restarted, relayed, opening)
                    return
                if restarted is None:
                    if isinstance(failure, _ErrorBeforeContent):
                        yield _unseen(failure.events, relayed, opening)
                        return
                    raise failure
                target, (upstream, events) = restarted
                handed = True
                yield _Begun(target, upstream, _unseen(events, relayed, opening))
                return
        finally:
            if not handed:
                await upstream.aclose()
                self._let_go()

    def _let_go(self) -> None:
        """Give back the kept answer's slot (its verdict is `finish`'s)."""
        if self.kept is not None:
            self.kept.release()

    async def _restart(
        self,
        ctx: Context,
        open_stream: OpenStream,
        opening: OpeningOf | None,
        failed: Target,
        failure: GatewayError,
    ) -> tuple[Target, _Opened] | list[SSEEvent] | None:
        """The request again, on the route's other targets (and `failed` last, where the
        route's retries allow asking a target again), each attempt
        held until its answer begins (`_opened`): the answering target and its stream; an
        upstream's own error events when that was the last word; None when no target
        answered (the caller raises `failure`, the failure that began the restart)."""
        route = self.route
        targets = route.targets
        index = targets.index(failed) if failed in targets else len(targets)
        order = (*targets[index + 1 :], *targets[:index])
        if route.policy.retry.attempts > 1:
            order += (failed,)  # asked again last, as its retries allow
        if not order:
            return None
        self._observer.failing_over(failed, failure.code)
        self.route = dataclasses.replace(route, targets=order)
        try:
            return await self.run(ctx, functools.partial(_opened, open_stream, opening), keep=True)
        except _ErrorBeforeContent as last:
            return last.events
        except GatewayError:
            if ctx.cause is not None:
                raise ctx.cause from None  # the request's own deadline, not the restart
            return None
        finally:
            self.route = route

    async def _stream(
        self, ctx: Context, open_stream: OpenStream, opening: OpeningOf | None
    ) -> AsyncGenerator[list[SSEEvent], None]:
        """`stream()` for a route that cannot continue: the answering upstream's reads."""
        begun: _Begun | None = None
        # Closed here, not left to the garbage collector: its finaliser hook would schedule
        # the close from another turn, through the loop's self-pipe (a syscall per request),
        # and a preamble cut short would keep its upstream open until then.
        async with contextlib.aclosing(self._begin(ctx, open_stream, opening)) as reads:
            async for item in reads:
                if isinstance(item, _Begun):
                    begun = item
                    break
                yield item
        if begun is None:
            return
        upstream, first = begun.upstream, begun.events
        lease = self.kept
        assert lease is not None  # kept by `run`
        # No call will follow this answer: the client's body (often the largest thing a
        # request holds) is let go rather than kept for as long as the answer streams.
        self.template = self.template.without_body()
        try:
            yield first
            async for events in upstream:
                yield events
        finally:
            await upstream.aclose()
            lease.release()

    def continue_stream(
        self,
        ctx: Context,
        open_stream: OpenStream,
        splice: Splice,
        cut: GatewayError,
        opening: OpeningOf | None = None,
    ) -> AsyncGenerator[list[SSEEvent], None]:
        """The continuation of an answer begun elsewhere (by a replica that died) and cut by
        `cut`: `splice` has observed every event its client has. Its events, rewritten, read
        by read, from the first capable target that takes it (any of the route's: which one
        was answering is not known here), continued again if it dies too; `cut` is raised
        when no continuation can be made."""
        attempt = functools.partial(_opened, open_stream, opening)
        return self._spliced_stream(ctx, attempt, splice, cut)

    async def _spliced_stream(
        self,
        ctx: Context,
        attempt: Attempt[_Opened],
        splice: Splice,
        cut: GatewayError | None = None,
        open_stream: OpenStream | None = None,
        opening: OpeningOf | None = None,
    ) -> AsyncGenerator[list[SSEEvent], None]:
        """`stream()` for a route that can continue: every read passes `splice`, and an
        answer that dies mid-way is continued (`_resume`) or ends as it would have. `cut`:
        the answer began elsewhere and was cut by it: it starts with a continuation."""
        plan = Continuation(self.route)
        if cut is None:
            assert open_stream is not None  # given with no `cut`
            begun: _Begun | None = None
            async with contextlib.aclosing(self._begin(ctx, open_stream, opening)) as reads:
                async for item in reads:  # closed here, as in `_stream`
                    if isinstance(item, _Begun):
                        begun = item
                        break
                    yield splice.observe(item)
            if begun is None:
                return
            target, upstream, first = begun.target, begun.upstream, begun.events
        else:
            resumed = await self._resume(ctx, attempt, splice, plan, None, cut)
            if resumed is None:
                raise cut
            target, upstream, first = resumed
        held = self.kept  # the lease of the answer being read, until it is given back
        cause = cut  # what cut the stream, once it has been continued
        try:
            # Inside the `try`: if the first events cannot be observed, the upstream is still
            # closed and its slot given back.
            events = splice.rewrite(first) if cause else splice.observe(first)
            _check_spliced(splice, cause)
            while True:
                if events:
                    yield events
                try:
                    events = await upstream.__anext__()
                except StopAsyncIteration:
                    if splice.complete:
                        return  # the relay judges the end (and adds [DONE] where due)
                    error: GatewayError | None = None  # ended cleanly, but short
                except GatewayError as exc:
                    if not continuable(exc):
                        raise
                    error = exc
                else:
                    events = splice.rewrite(events) if cause else splice.observe(events)
                    _check_spliced(splice, cause)
                    continue
                await upstream.aclose()
                assert held is not None
                held.release()
                held = None
                cause = error or UpstreamTruncated()
                self.finish(cause)
                resumed = await self._resume(ctx, attempt, splice, plan, target, cause)
                if resumed is None:
                    if error is None:
                        return  # the relay sees the stream short of its end: cut
                    raise error
                target, held = resumed[0], self.kept
                upstream, events = resumed[1], splice.rewrite(resumed[2])
                _check_spliced(splice, cause)
        finally:
            await upstream.aclose()
            if held is not None:
                held.release()

    async def _resume(
        self,
        ctx: Context,
        attempt: Attempt[_Opened],
        splice: Splice,
        plan: Continuation,
        after: Target | None,
        error: GatewayError,
    ) -> tuple[Target, ContextAwareStream[list[SSEEvent]], list[SSEEvent]] | None:
        """A continuation's stream and its first events, from the first target that takes it
        (the ones after `after` first, `after` last; None: the route's capable ones in
        order); None if none can or did. A result no call made is counted on `after` (or
        the route's first target).

        A failed continuation never masks `error`, the failure it continues: the caller raises
        that one (unless the request's own deadline passed meanwhile: that is raised here).
        """
        observer = self._observer
        cut_on = after or self.route.targets[0]
        if not splice.sound:
            observer.continuing(cut_on, UNSOUND, error)
            return None
        body = splice.body(self.template.body)
        called = False
        for target in plan.candidates(after):
            if ctx.done():
                continue
            lease = await plan.take(target)
            if lease is None:
                continue
            called = True
            try:
                upstream, first = await self._call(target, lease, attempt, True, body)
            except GatewayError as failure:
                observer.continuing(target, result_of(failure), error)
                continue
            observer.continuing(target, OK, error)
            return target, upstream, first
        if not called:
            observer.continuing(cut_on, EXHAUSTED, error)
        if ctx.cause is not None:
            raise ctx.cause  # the total deadline ended the request, not the cut
        return None


class _Skipped(Exception):
    """A target was passed over without a call; `reason` is a failover reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Exhausted(Exception):
    """A target's calls are over and the request should fail over; `error` ended the last."""

    def __init__(self, error: GatewayError) -> None:
        self.error = error


@dataclass(slots=True)
class _Walk:
    """One walk down a chain: the last error of a call, why targets were skipped."""

    failure: GatewayError | None = None  # of the latest call made
    refusal: GatewayError | None = None  # of the latest target skipped for being full
    open_circuits: list[Target] = field(default_factory=list)
    last_resort: bool = False  # calling targets whose circuit is open: no call was possible

    async def admit(self, target: Target) -> CallLease:
        """`target`'s circuit permission and a slot (as a last resort, the slot alone), or
        raise `_Skipped` with neither."""
        try:
            return await target.backend.acquire(last_resort=self.last_resort)
        except CircuitOpen:
            if target not in self.open_circuits:
                self.open_circuits.append(target)
            raise _Skipped(_CIRCUIT_OPEN) from None
        except GatewayOverloaded:
            self.refusal = GatewayOverloaded(_ALL_BUSY, retry_after="1")
            raise _Skipped(GatewayOverloaded.code) from None


_CIRCUIT_OPEN = "circuit_open"
_ALL_BUSY = "every target of this model is at its limit of concurrent requests"


async def _pause(ctx: Context, delay: float) -> None:
    """Wait `delay` seconds, or until the request's context ends (its cause is raised).

    The client leaving cancels the task: that `CancelledError` passes through untouched.
    """
    with ctx.scope():
        await asyncio.sleep(delay)


def _check_spliced(splice: Splice, cause: GatewayError | None) -> None:
    """End the stream with what cut it if its continuation did not continue its text."""
    if splice.diverged and cause is not None:
        raise cause


class _ErrorBeforeContent(UpstreamErrorEvent):
    """The upstream's own error event came before any content of its answer: the call failed
    (the next target may answer); `events` are that upstream's, up to its error."""

    default_message = "the upstream reported an error before any answer content"

    def __init__(self, events: list[SSEEvent]) -> None:
        super().__init__()
        self.events = events


@dataclass(frozen=True, slots=True)
class _Begun:
    """The answering stream, kept, and its read that began the answer (`Chain._begin`)."""

    target: Target
    upstream: ContextAwareStream[list[SSEEvent]]
    events: list[SSEEvent]


def _unseen(
    events: list[SSEEvent], relayed: set[str | None], opening: OpeningOf | None
) -> list[SSEEvent]:
    """A restarted answer's `events` without the part of its preamble the client already
    has: a preamble event named as one relayed (a second `message_start`, role chunk or
    `response.created`) is dropped; one the client has not had (a `content_block_start`
    after a lone `message_start`) is kept."""
    if not relayed or opening is None:
        return events
    for index, event in enumerate(events):
        if opening(event) is not Opening.PREAMBLE:
            head = [e for e in events[:index] if e.event not in relayed]
            return head + events[index:]
    return [event for event in events if event.event not in relayed]


async def _first_events(open_stream: OpenStream, target: Target, call: UpstreamRequest) -> _Opened:
    """Open `target`'s stream and wait for its first events (a failed stream closes itself):
    the first call of a stream, whose events are relayed as they come (`Chain._begin`)."""
    upstream = open_stream(target, call)
    try:
        first = await upstream.__anext__()
    except StopAsyncIteration:
        raise UpstreamTruncated() from None
    return upstream, first


#: Most bytes of preamble an upstream may send before its answer's content: more is not an
#: answer beginning (and what is held must stay small), it is a broken upstream.
_MAX_PREAMBLE_BYTES = 64 * 1024


def _preamble_failure(said: Opening, events: list[SSEEvent], size: int) -> GatewayError | None:
    """What a read of an answer not yet begun stands for: the upstream's own error
    (`events`: its events so far), a preamble past `_MAX_PREAMBLE_BYTES` (`size` bytes so
    far), or None: more preamble."""
    if said is Opening.ERROR:
        return _ErrorBeforeContent(events)
    if size > _MAX_PREAMBLE_BYTES:
        return UpstreamProtocolError(
            f"the upstream sent over {_MAX_PREAMBLE_BYTES} bytes before any answer content"
        )
    return None


async def _opened(
    open_stream: OpenStream, opening: OpeningOf | None, target: Target, call: UpstreamRequest
) -> _Opened:
    """Open `target`'s stream and read it until its answer begins: the stream and its events
    so far, the preamble held until then first (a failed stream closes itself).

    Raises what ended the stream before: its failure, `UpstreamTruncated` for an end,
    `_ErrorBeforeContent` for the upstream's own error, `UpstreamProtocolError` for a
    preamble beyond `_MAX_PREAMBLE_BYTES`. The stream hears when the content began (its
    first-token limit is met); `opening` is asked of no event after that one.
    """
    upstream = open_stream(target, call)
    held: list[SSEEvent] = []
    size = 0
    while True:
        try:
            events = await upstream.__anext__()
        except StopAsyncIteration:
            raise UpstreamTruncated() from None
        said = Opening.CONTENT if opening is None else _first_word(opening, events)
        if said is Opening.CONTENT:
            break
        held += events
        size += sum(len(event.raw) for event in events)
        failure = _preamble_failure(said, held, size)
        if failure is not None:
            await upstream.aclose()
            raise failure
    upstream.content_arrived()
    if held:
        held += events
        return upstream, held
    return upstream, events


def _first_word(opening: OpeningOf, events: list[SSEEvent]) -> Opening:
    """What the first of `events` that is not preamble says (`PREAMBLE` if none)."""
    for event in events:
        said = opening(event)
        if said is not Opening.PREAMBLE:
            return said
    return Opening.PREAMBLE
