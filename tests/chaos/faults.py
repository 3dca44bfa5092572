"""The foundation's fault list as chaos plans: one builder per way an upstream can answer, each
an `UpstreamPlan` drawn from `Dice`, and their weights in the mix - `STREAM_FAULTS` for
`stream: true` requests, `ANSWER_FAULTS` for `stream: false`.

Streams: complete (with its marker; without it, after a final chunk; its marker followed by
more), ended cleanly unfinished, cut by FIN or RST at an event boundary or mid-event (chunked or
close-delimited), stalled before the headers, before the first event or mid-stream, a trickle
past its total deadline, an event over the size limit, the upstream's own error event, bytes
that never become an event, megabytes for a slow reader (then ended, stalled or cut), HTML or JSON
where a stream belongs. Both: error statuses, FIN or RST before the headers, bytes that are not
HTTP, an upstream that refuses connections. Answers: complete, cut, stalled, over the size
limit, HTML.
"""

from __future__ import annotations

from aiohttp import web

from tests.chaos.apis import ANTHROPIC
from tests.chaos.upstream_plan import (
    MAX_EVENT_BYTES,
    MAX_RESPONSE_BYTES,
    Dice,
    Ending,
    Fault,
    UpstreamPlan,
)
from tests.support import fake_upstream as fake
from tests.support.fake_behaviours import DetachedResponse
from tests.support.fake_upstream import Behaviour, UpstreamCall

__all__ = ["ANSWER_FAULTS", "STREAM_FAULTS"]

#: A FIN is an orderly end: every byte sent before it arrives, and every event it completed
#: must be relayed. A reset aborts: TCP may drop what was still in flight (a loaded host drops
#: loopback segments it has no memory for, and nothing retransmits them after a reset), so a
#: reset stream may relay any prefix of what was sent - byte-exact, and ended by one error.
_CUT_CODES = {
    "fin": frozenset({"upstream_truncated"}),
    "rst": frozenset({"upstream_truncated", "connection_reset"}),
}


# --- behaviours the shared fake has no builder for --------------------------------------------


def _closing(data: bytes) -> Behaviour:
    """Write `data` (maybe nothing) on the bare connection, then close it (FIN)."""

    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the peer closed the connection")
        call.cut_by_upstream = True
        if data:
            transport.write(data)
        transport.close()
        return DetachedResponse()

    return behave


# --- stream: true --------------------------------------------------------------------------------


def complete(d: Dice) -> UpstreamPlan:
    events = [*d.complete(), d.api.marker]
    behaviour = fake.sse_stream(d.writes(d.noisy(events)), done=False, chunked=d.chunked())
    return UpstreamPlan("complete", Ending.MARKER, behaviour, tuple(events))


def complete_without_marker(d: Dice) -> UpstreamPlan:
    events = d.complete()
    behaviour = fake.sse_stream(d.writes(d.noisy(events)), done=False, chunked=d.chunked())
    return UpstreamPlan("complete-without-marker", Ending.TRAILER, behaviour, tuple(events))


def marker_then_more(d: Dice) -> UpstreamPlan:
    """After its marker the upstream goes on and then holds: the gateway must stop at the
    marker and close the upstream."""
    events = [*d.complete(), d.api.marker]
    writes = d.writes([*events, *d.body()])
    behaviour = fake.stall_after(len(writes), writes)
    return UpstreamPlan("marker-then-more", Ending.MARKER, behaviour, tuple(events), holds=True)


def unfinished(d: Dice) -> UpstreamPlan:
    events = d.body()
    behaviour = fake.sse_stream(d.writes(d.noisy(events)), done=False, chunked=d.chunked())
    return UpstreamPlan(
        "clean-end-unfinished", Ending.ERROR, behaviour, tuple(events), _CUT_CODES["fin"]
    )


def _cut(d: Dice, *, mid_event: bool) -> UpstreamPlan:
    body = d.body()
    kept = d.rng.randint(0, len(body) - 1) if mid_event else d.rng.randint(0, len(body))
    half = b""
    if mid_event:
        frame = body[kept]
        half = frame[: d.rng.randint(1, len(frame) - 2)]
    writes = d.writes(d.noisy(body[:kept])) if kept else []
    how = d.rng.choice(("fin", "rst"))
    cut = fake.cut_fin if how == "fin" else fake.cut_rst
    behaviour = cut(len(writes), chunked=d.chunked(), half=half, chunks=writes)
    where = "mid-event" if mid_event else "at-boundary"
    return UpstreamPlan(
        f"cut-{how}-{where}",
        Ending.ERROR,
        behaviour,
        tuple(body[:kept]),
        _CUT_CODES[how],
        any_prefix=how == "rst",
    )


def cut_at_boundary(d: Dice) -> UpstreamPlan:
    return _cut(d, mid_event=False)


def cut_mid_event(d: Dice) -> UpstreamPlan:
    return _cut(d, mid_event=True)


def stall_before_headers(d: Dice) -> UpstreamPlan:
    return UpstreamPlan(
        "stall-before-headers",
        Ending.ERROR,
        fake.stall_before_headers(),
        codes=frozenset({"first_byte_timeout"}),
        headers=(("x-gateway-first-byte-timeout", d.deadline()),),
        holds=True,
    )


def stall_before_first_event(d: Dice) -> UpstreamPlan:
    return UpstreamPlan(
        "stall-before-first-event",
        Ending.ERROR,
        fake.stall_before_first_event(),
        codes=frozenset({"first_byte_timeout"}),
        headers=(("x-gateway-first-byte-timeout", d.deadline()),),
        holds=True,
    )


def stall_mid_stream(d: Dice, *, big: bool = False) -> UpstreamPlan:
    body = _big_events(d) if big else d.body()
    kept = body[: d.rng.randint(1, len(body))]
    writes = kept if big else d.writes(d.noisy(kept))  # big: one write per event
    return UpstreamPlan(
        "stall-mid-stream-big" if big else "stall-mid-stream",
        Ending.ERROR,
        fake.stall_after(len(writes), writes),
        tuple(kept),
        frozenset({"idle_timeout"}),
        # Megabytes take a loaded event loop a while: the gap must be the upstream's stall.
        headers=(("x-gateway-idle-timeout", d.deadline(1.0, 2.0) if big else d.deadline()),),
        holds=True,
    )


def trickle(d: Dice) -> UpstreamPlan:
    """Events every few milliseconds for longer than any test: the total deadline ends it."""
    events = d.api.events(["tick"] * 3000, finish=False)
    behaviour = fake.sse_stream(events, delay=d.rng.uniform(0.005, 0.02), done=False)
    return UpstreamPlan(
        "trickle-past-total-deadline",
        Ending.ERROR,
        behaviour,
        tuple(events),
        frozenset({"deadline_exceeded"}),
        headers=(("x-gateway-total-timeout", d.deadline()),),
        holds=True,
        any_prefix=True,
    )


def huge_event(d: Dice) -> UpstreamPlan:
    body = d.body()
    kept = body[: d.rng.randint(0, len(body))]
    huge = d.api.big_event("x" * d.rng.randint(MAX_EVENT_BYTES + 10, 3 * MAX_EVENT_BYTES))
    writes = d.writes([*d.noisy(kept), huge, *body[len(kept) :]])
    return UpstreamPlan(
        "huge-event",
        Ending.ERROR,
        fake.sse_stream(writes, done=False),
        tuple(kept),
        frozenset({"event_too_large"}),
    )


def upstream_error_event(d: Dice) -> UpstreamPlan:
    body = d.body()
    kept = [*body[: d.rng.randint(0, len(body))], d.api.error_event]
    writes = d.writes([*d.noisy(kept), *d.body()])
    return UpstreamPlan(
        "upstream-error-event",
        Ending.UPSTREAM_ERROR,
        fake.stall_after(len(writes), writes),
        tuple(kept),
        holds=True,
    )


def garbage_tail(d: Dice) -> UpstreamPlan:
    """Events, then bytes that never become an event, then a clean end."""
    body = d.body()
    kept = body[: d.rng.randint(0, len(body))]
    junk = b"x-" + bytes(d.rng.choice(b"\x00\x7fabc: \xfe\xff") for _ in range(40))
    behaviour = fake.sse_stream(d.writes([*d.noisy(kept), junk]), done=False)
    return UpstreamPlan("garbage-tail", Ending.ERROR, behaviour, tuple(kept), _CUT_CODES["fin"])


def _big_events(d: Dice) -> list[bytes]:
    """More than the kernel buffers between two loopback sockets (up to 4 MB sent, 8 kB
    received by a narrow client): a slow reader makes the gateway wait on its writes."""
    size = d.rng.randint(8_000, 16_000)
    event = d.api.big_event("y" * size)
    return [event] * (d.rng.randint(5_000_000, 7_000_000) // size)


def big_stream(d: Dice) -> UpstreamPlan:
    events = [*_big_events(d), d.api.marker]
    return UpstreamPlan(
        "big-stream", Ending.MARKER, fake.sse_stream(events, done=False), tuple(events)
    )


def big_stream_then_stall(d: Dice) -> UpstreamPlan:
    return stall_mid_stream(d, big=True)


def big_stream_then_cut(d: Dice) -> UpstreamPlan:
    """Megabytes and a few small events, then a cut at an event boundary while the relay is
    busy writing to a slow reader. After a FIN every event sent must still reach the client;
    a reset also discards what the upstream's kernel had not sent yet."""
    events = [*_big_events(d), *d.body()]
    how = d.rng.choice(("fin", "rst"))
    cut = fake.cut_fin if how == "fin" else fake.cut_rst
    behaviour = cut(len(events), chunked=d.chunked(), chunks=events)
    return UpstreamPlan(
        f"big-stream-cut-{how}",
        Ending.ERROR,
        behaviour,
        tuple(events),
        _CUT_CODES[how],
        any_prefix=how == "rst",
    )


def html_page(d: Dice) -> UpstreamPlan:
    code = d.rng.choice((200, 502))
    error = "upstream_protocol_error" if code == 200 else "upstream_status_5xx"
    return UpstreamPlan(f"html-{code}", Ending.ERROR, fake.html(code), codes=frozenset({error}))


def json_to_a_stream(d: Dice) -> UpstreamPlan:
    behaviour = fake.status(200, body=d.api.answer("not a stream"))
    return UpstreamPlan(
        "json-to-a-stream", Ending.ERROR, behaviour, codes=frozenset({"upstream_protocol_error"})
    )


# --- both ----------------------------------------------------------------------------------------


_STATUSES = (
    (429, "upstream_rate_limited"),
    (500, "upstream_status_5xx"),
    (503, "upstream_status_5xx"),
    (400, "upstream_bad_request"),
    (401, "upstream_auth_failed"),
    (403, "upstream_auth_failed"),
)


def error_status(d: Dice) -> UpstreamPlan:
    statuses = [*_STATUSES, (529, "upstream_status_5xx")] if d.api is ANTHROPIC else _STATUSES
    code, error = d.rng.choice(statuses)
    retry_after = str(d.rng.randint(1, 99)) if code == 429 else None
    headers = {"Retry-After": retry_after} if retry_after else None
    behaviour = fake.status(code, body=d.api.error_body(code), headers=headers)
    return UpstreamPlan(
        f"status-{code}",
        Ending.ERROR,
        behaviour,
        codes=frozenset({error}),
        retry_after=retry_after,
    )


def cut_before_headers(d: Dice) -> UpstreamPlan:
    how = d.rng.choice(("fin", "rst"))
    behaviour = fake.reset_before_headers() if how == "rst" else _closing(b"")
    return UpstreamPlan(
        f"{how}-before-headers", Ending.ERROR, behaviour, codes=frozenset({"connection_reset"})
    )


def garbage_response(d: Dice) -> UpstreamPlan:
    junk = bytes(d.rng.randrange(256) for _ in range(d.rng.randint(20, 200)))
    return UpstreamPlan(
        "garbage-response",
        Ending.ERROR,
        _closing(b"\x00GARBAGE " + junk + b"\r\n\r\n"),
        codes=frozenset({"upstream_protocol_error"}),
    )


def connect_refused(d: Dice) -> UpstreamPlan:
    return UpstreamPlan(
        "connect-refused", Ending.ERROR, codes=frozenset({"connect_failed"}), dead=True
    )


# --- stream: false -------------------------------------------------------------------------------


def answer(d: Dice) -> UpstreamPlan:
    body = d.api.answer("".join(d.texts()))
    return UpstreamPlan("answer", Ending.ANSWER, fake.status(200, body=body), answer=body)


def answer_cut(d: Dice) -> UpstreamPlan:
    return UpstreamPlan(
        "answer-cut",
        Ending.ERROR,
        fake.json_cut(d.rng.randint(0, 40)),
        codes=frozenset({"upstream_truncated"}),
    )


def answer_stall(d: Dice) -> UpstreamPlan:
    plan = stall_before_headers(d)
    return UpstreamPlan(
        "answer-stall",
        Ending.ERROR,
        plan.behaviour,
        codes=plan.codes,
        headers=plan.headers,
        holds=True,
    )


def answer_too_large(d: Dice) -> UpstreamPlan:
    body = d.api.answer("z" * d.rng.randint(MAX_RESPONSE_BYTES, 2 * MAX_RESPONSE_BYTES))
    return UpstreamPlan(
        "answer-too-large",
        Ending.ERROR,
        fake.status(200, body=body),
        codes=frozenset({"upstream_protocol_error"}),
    )


def answer_html(d: Dice) -> UpstreamPlan:
    code = d.rng.choice((200, 502))
    error = "upstream_protocol_error" if code == 200 else "upstream_status_5xx"
    return UpstreamPlan(f"html-{code}", Ending.ERROR, fake.html(code), codes=frozenset({error}))


#: (weight, builder) for `stream: true` requests.
STREAM_FAULTS: tuple[tuple[int, Fault], ...] = (
    (8, complete),
    (2, complete_without_marker),
    (1, marker_then_more),
    (2, unfinished),
    (3, cut_at_boundary),
    (3, cut_mid_event),
    (2, stall_before_headers),
    (2, stall_before_first_event),
    (3, stall_mid_stream),
    (2, trickle),
    (1, huge_event),
    (2, upstream_error_event),
    (1, garbage_tail),
    (1, big_stream),
    (1, big_stream_then_stall),
    (1, big_stream_then_cut),
    (1, html_page),
    (1, json_to_a_stream),
    (3, error_status),
    (2, cut_before_headers),
    (1, garbage_response),
    (1, connect_refused),
)

#: (weight, builder) for `stream: false` requests.
ANSWER_FAULTS: tuple[tuple[int, Fault], ...] = (
    (6, answer),
    (2, answer_cut),
    (2, answer_stall),
    (1, answer_too_large),
    (1, answer_html),
    (3, error_status),
    (2, cut_before_headers),
    (1, garbage_response),
    (1, connect_refused),
)
