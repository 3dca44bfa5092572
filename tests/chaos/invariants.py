"""The contract's promises, checked on one chaos request: what its client received
(`check_exchange`) and the one line the gateway wrote about it (`check_record`).

Each returns the violations it found, as sentences (empty: none), so that a mix can report
every broken request with its seed instead of stopping at the first.

On the wire (contract section 2-5):

- the frames a client received (the gateway's `: ping` comments aside) are exactly the frames
  the upstream sent that the contract says to relay, byte-exact and in order - all of them when
  the client read to the end, a prefix when it left (or when a total deadline cut a trickle);
  a client that read to the end has no partial frame left over;
- then exactly one ending: the upstream's marker (nothing after it), the gateway's trailer
  after a stream complete without its marker, the upstream's own error event, or exactly one
  gateway `event: error` frame - one line of JSON in the API's shape, with the plan's category
  and code;
- an error before anything was relayed is a real status with the API's JSON error body - or,
  when a heartbeat committed the headers first, a 200 of heartbeats and that one error frame;
- a non-streaming answer is relayed byte-exact; every response carries the request's id; an
  upstream 429's Retry-After passes on.

In the record: one `request_finished`/`stream_finished` line per request, whose outcome and code
are the plan's (`client_disconnected` when the client left a held call; either when it left one
that could end by itself), and whose byte and event counts are what the client received.
"""

from __future__ import annotations

import json
from typing import Any

from tests.chaos.apis import ERRORS, HEARTBEAT, Api
from tests.chaos.client import Exchange
from tests.chaos.plans import RequestPlan
from tests.chaos.upstream_plan import Ending

#: OpenAI's `error.type` vocabulary (contract section 4).
OPENAI_ERROR_TYPES = frozenset({
    "invalid_request_error", "authentication_error", "permission_error", "not_found_error",
    "rate_limit_error", "server_error", "timeout_error",
})  # fmt: skip

__all__ = ["check_exchange", "check_record"]

_ERROR_FRAME = b"event: error\ndata: "


def check_exchange(plan: RequestPlan, got: Exchange) -> list[str]:
    """What the client received, against the contract; [] when it all holds."""
    if got.failure is not None:
        return [f"the response failed under a client that stayed: {got.failure}"]
    if got.status is None:
        return [] if got.left else ["no response and the client did not leave"]
    problems: list[str] = []
    if got.headers.get("x-request-id") != plan.request_id:
        problems.append(f"x-request-id {got.headers.get('x-request-id')!r} is not the client's")
    if got.status != 200:
        problems += _check_status(plan, got)
    elif plan.stream and plan.upstream.ending is not Ending.ANSWER:
        problems += _check_stream(plan, got)
    else:
        problems += _check_answer(plan, got)
    return problems


def check_record(plan: RequestPlan, got: Exchange, line: dict[str, Any]) -> list[str]:
    """The gateway's one line about the request, against the plan and what the client got."""
    codes = set(plan.upstream.outcome_codes)
    if plan.strict_leave:
        codes = {"client_disconnected"}
    elif got.left:
        codes.add("client_disconnected")
    outcomes = {_outcome(code) for code in codes}
    if not plan.upstream.outcome_codes and not plan.strict_leave:
        outcomes.add("completed")
    outcome, code = line.get("outcome"), line.get("code")
    problems: list[str] = []
    if outcome not in outcomes or (code is not None and code not in codes):
        problems.append(f"recorded {outcome}/{code}, expected one of {sorted(outcomes)}")
    elif code is None and outcome != "completed":
        problems.append(f"recorded {outcome} without a code")
    elif code is not None and (outcome, line.get("category")) != (
        _outcome(code),
        ERRORS[code].category,
    ):
        problems.append(f"recorded {outcome}/{line.get('category')} for code {code}")
    matched = _matched(plan, got.body) if got.status == 200 and plan.stream else 0
    if code == "client_disconnected":
        problems += _check_phase(plan, matched, line.get("phase"))
    if got.finished and line.get("bytes") != len(got.body):
        problems.append(f"recorded {line.get('bytes')} bytes, the client got {len(got.body)}")
    if got.finished and line.get("events") != matched:
        problems.append(f"recorded {line.get('events')} events, the client got {matched}")
    return problems


def _outcome(code: str) -> str:
    return "client_disconnected" if code == "client_disconnected" else ERRORS[code].category


def _check_phase(plan: RequestPlan, matched: int, phase: object) -> list[str]:
    if matched and phase != "streaming":
        return [f"a client that left after events is recorded in phase {phase!r}"]
    if plan.strict_leave and not plan.upstream.relayed and phase != "waiting_first_byte":
        return [f"a client that left before any event is recorded in phase {phase!r}"]
    return []


# --- before commit -------------------------------------------------------------------------------


def _check_status(plan: RequestPlan, got: Exchange) -> list[str]:
    upstream = plan.upstream
    if upstream.ending is not Ending.ERROR:
        return [f"status {got.status} for a plan that ends with {upstream.ending.value}"]
    if upstream.relayed and not upstream.any_prefix:
        return [
            f"status {got.status}, but {len(upstream.relayed)} events should be relayed: "
            f"{got.body[:200]!r}"
        ]
    problems = []
    if not got.headers.get("content-type", "").startswith("application/json"):
        problems.append(f"an error status with Content-Type {got.headers.get('content-type')}")
    if not got.finished:
        return problems
    try:
        payload = json.loads(got.body)
    except ValueError:
        return [*problems, f"an error status with a body that is not JSON: {got.body[:200]!r}"]
    problems += _check_error(plan.api, payload, upstream.codes, status=got.status)
    if upstream.retry_after and got.headers.get("retry-after") != upstream.retry_after:
        problems.append(f"Retry-After {got.headers.get('retry-after')!r} not passed on")
    return problems


def _check_error(
    api: Api, payload: Any, codes: frozenset[str], *, status: int | None = None
) -> list[str]:
    """An error body or error event's JSON in `api`'s shape, for one of `codes`."""
    wires = [ERRORS[code] for code in codes]
    if status is not None and status not in {wire.status for wire in wires}:
        return [f"status {status}, expected one of {sorted({w.status for w in wires})}"]
    if api.path == "/v1/messages":
        if not (isinstance(payload, dict) and payload.get("type") == "error"):
            return [f"not an Anthropic error: {payload!r}"]
        error = payload.get("error")
        if not isinstance(error, dict) or set(error) != {"type", "message"}:
            return [f"not an Anthropic error object: {payload!r}"]
        if error["type"] not in {wire.anthropic_type for wire in wires}:
            return [f"Anthropic error type {error['type']!r} for codes {sorted(codes)}"]
        return []
    error = payload.get("error") if isinstance(payload, dict) else None
    if status is None:  # an error event after the commit: the category is its `type`
        if not isinstance(error, dict) or set(error) != {"message", "type", "code", "param"}:
            return [f"not an OpenAI error event: {payload!r}"]
        category = error["type"]
    else:  # an error body: OpenAI's `type` vocabulary, the category beside it
        fields = {"message", "type", "code", "param", "category"}
        if not isinstance(error, dict) or set(error) != fields:
            return [f"not an OpenAI error: {payload!r}"]
        if error["type"] not in OPENAI_ERROR_TYPES:
            return [f"OpenAI error type {error['type']!r} is not OpenAI's vocabulary"]
        category = error["category"]
    if error["code"] not in codes or category != ERRORS[error["code"]].category:
        return [f"OpenAI error {category}/{error['code']} for codes {sorted(codes)}"]
    return []


def _check_answer(plan: RequestPlan, got: Exchange) -> list[str]:
    if plan.upstream.ending is not Ending.ANSWER:
        return [f"status 200 for a plan that ends with {plan.upstream.ending.value}"]
    if got.finished and got.body != plan.upstream.answer:
        return [f"the answer is not relayed byte-exact: {got.body[:200]!r}"]
    return []


# --- streams -------------------------------------------------------------------------------------


def _frames(body: bytes) -> tuple[list[bytes], bytes]:
    """(the complete frames of `body`, each with its blank line, but heartbeats; the rest)."""
    *complete, rest = body.split(b"\n\n")
    frames = [frame + b"\n\n" for frame in complete]
    return [frame for frame in frames if frame != HEARTBEAT], rest


def _prefix(frames: list[bytes], relayed: tuple[bytes, ...]) -> int:
    """How many of `frames` are the first of `relayed`, in order."""
    matched = 0
    while matched < min(len(frames), len(relayed)) and frames[matched] == relayed[matched]:
        matched += 1
    return matched


def _matched(plan: RequestPlan, body: bytes) -> int:
    """How many upstream events a stream's `body` relayed."""
    return _prefix(_frames(body)[0], plan.upstream.relayed)


def _check_stream(plan: RequestPlan, got: Exchange) -> list[str]:
    upstream = plan.upstream
    if not got.headers.get("content-type", "").startswith("text/event-stream"):
        return [f"a stream with Content-Type {got.headers.get('content-type')}"]
    frames, rest = _frames(got.body)
    if got.finished and rest:
        return [f"a partial frame at the end of the stream: {rest[:200]!r}"]
    relayed = upstream.relayed
    matched = _prefix(frames, relayed)
    tail = frames[matched:]
    if got.finished and got.body.endswith(HEARTBEAT):
        return ["a heartbeat after the end of the stream"]
    if not got.finished:
        # The client left: what it got must be a prefix of what the contract expects.
        if len(tail) > 1 or (tail and not _is_ending(plan, tail[0], matched)):
            return [f"frame {matched} is not the upstream's: {tail[0][:200]!r}"]
        return []
    complete = matched == len(relayed) or (upstream.any_prefix and upstream.ending is Ending.ERROR)
    if not complete:
        return [
            f"got {matched} of the {len(relayed)} events to relay, then "
            f"{tail[0][:200] if tail else b'the end'!r}"
        ]
    problems = _check_ending(plan, tail, matched)
    if upstream.ending is Ending.ERROR and matched == 0 and HEARTBEAT not in got.body:
        problems.append("status 200 before any event and without a heartbeat")
    return problems


def _is_ending(plan: RequestPlan, frame: bytes, matched: int) -> bool:
    return not _check_ending(plan, [frame], matched)


def _check_ending(plan: RequestPlan, tail: list[bytes], matched: int) -> list[str]:
    """`tail` (what came after the relayed events) is the one ending the plan expects."""
    ending, api = plan.upstream.ending, plan.api
    if ending in (Ending.MARKER, Ending.UPSTREAM_ERROR):
        return [f"frames after the last upstream event: {tail!r}"[:300]] if tail else []
    if ending is Ending.TRAILER:
        return [] if tail == [api.trailer] else [f"not the one trailer at the end: {tail!r}"[:300]]
    if len(tail) != 1 or not tail[0].startswith(_ERROR_FRAME):
        return [f"not exactly one error event at the end after {matched} events: {tail!r}"[:300]]
    line = tail[0][len(_ERROR_FRAME) : -2]
    if b"\n" in line or b"\r" in line:
        return [f"an error event that is not one line of JSON: {tail[0]!r}"[:300]]
    try:
        payload = json.loads(line)
    except ValueError:
        return [f"an error event whose data is not JSON: {tail[0]!r}"[:300]]
    problems = _check_error(api, payload, plan.upstream.codes)
    if api.path != "/v1/messages" and not problems:
        error = payload["error"]
        if (payload.get("type"), payload.get("message")) != (error["type"], error["message"]):
            problems.append(f"the seed's type/message disagree with the error: {payload!r}")
    return problems
