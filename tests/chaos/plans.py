"""Whole chaos requests, drawn from a seed: the API, `stream` or not, what the upstream does
(`tests.chaos.upstream_plan`), what the client does, and the request itself.

`draw(seed, index)` is a pure function of its arguments, so a failing request is reproduced by
its seed and index alone. Most requests are well-formed; some break the gateway's limits at the
edge (malformed or schema-invalid body, unknown model, bad deadline header, oversized body) and
never reach an upstream.

Client moves: read everything; read slowly (small pauses between reads, but always reading, so
the gateway meets backpressure without a stalled reader); leave before the headers come (once
the upstream has the request); leave after some events. A client leaves a held upstream call
(`UpstreamPlan.holds`) only before the call could end otherwise, and with long deadlines: then
its leaving, and nothing else, is what must close the upstream connection.
"""

from __future__ import annotations

import enum
import json
import os
import random
from dataclasses import dataclass

from tests.chaos.apis import APIS, Api
from tests.chaos.faults import ANSWER_FAULTS, STREAM_FAULTS
from tests.chaos.upstream_plan import Dice, Ending, Fault, UpstreamPlan

__all__ = ["ClientMove", "ClientPlan", "RequestPlan", "draw", "seed_from_environment"]

MAX_REQUEST_BYTES = 65_536  # the chaos gateway's limits.max_request_bytes
_P_BAD_INPUT = 0.06
_P_LEAVE = 0.2


class ClientMove(enum.Enum):
    READ_ALL = "read-all"
    READ_SLOWLY = "read-slowly"
    LEAVE_BEFORE_HEADERS = "leave-before-headers"
    LEAVE_AFTER_EVENTS = "leave-after-events"


@dataclass(frozen=True, slots=True)
class ClientPlan:
    move: ClientMove
    events: int = 0  # LEAVE_AFTER_EVENTS: upstream events read first
    pause: float = 0.0  # READ_SLOWLY: seconds between reads

    @property
    def leaves(self) -> bool:
        return self.move in (ClientMove.LEAVE_BEFORE_HEADERS, ClientMove.LEAVE_AFTER_EVENTS)


@dataclass(frozen=True, slots=True)
class RequestPlan:
    seed: int
    index: int
    api: Api
    stream: bool
    upstream: UpstreamPlan
    client: ClientPlan
    model: str
    body: bytes
    headers: tuple[tuple[str, str], ...]

    @property
    def request_id(self) -> str:
        return f"chaos-{self.seed}-{self.index}"

    @property
    def strict_leave(self) -> bool:
        """The client leaves a held call that nothing else can end in time: the outcome must
        be `client_disconnected`, and the upstream connection closed by the gateway."""
        return self.client.leaves and self.upstream.holds and self.upstream.ending is Ending.ERROR

    def describe(self) -> str:
        move = self.client.move.value
        if self.client.move is ClientMove.LEAVE_AFTER_EVENTS:
            move += f"({self.client.events})"
        mode = "stream" if self.stream else "json"
        return (
            f"request {self.index} of seed {self.seed} ({self.request_id}): {self.api.path} "
            f"{mode}, upstream {self.upstream.fault}, client {move}"
        )


def seed_from_environment() -> int:
    """`SSE_GATEWAY_CHAOS_SEED`, or a new seed each run (a failure names it)."""
    given = os.environ.get("SSE_GATEWAY_CHAOS_SEED")
    return int(given) if given else random.SystemRandom().randrange(10**9)


def draw(seed: int, index: int) -> RequestPlan:
    """The `index`-th request of the mix of `seed`."""
    rng = random.Random(f"{seed}:{index}")
    api = rng.choice(APIS)
    stream = rng.random() < 0.8
    if rng.random() < _P_BAD_INPUT:
        return _bad_input(rng, seed, index, api, stream)
    faults = STREAM_FAULTS if stream else ANSWER_FAULTS
    fault = _pick(rng, faults)
    leaves = rng.random() < _P_LEAVE
    upstream = fault(Dice(rng, api, long=leaves))
    client = _client(rng, upstream, leaves=leaves)
    prefix = api.dead_route if upstream.dead else api.route
    model = prefix.replace("*", f"{seed}-{index}")
    return RequestPlan(
        seed,
        index,
        api,
        stream,
        upstream,
        client,
        model,
        api.request(model, stream=stream),
        upstream.headers,
    )


def _pick(rng: random.Random, faults: tuple[tuple[int, Fault], ...]) -> Fault:
    weights = [weight for weight, _ in faults]
    builders = [builder for _, builder in faults]
    fault: Fault = rng.choices(builders, weights=weights)[0]
    return fault


def _client(rng: random.Random, upstream: UpstreamPlan, *, leaves: bool) -> ClientPlan:
    if not leaves or not upstream.reaches_upstream:
        if rng.random() < 0.25:
            return ClientPlan(ClientMove.READ_SLOWLY, pause=rng.uniform(0.0005, 0.005))
        return ClientPlan(ClientMove.READ_ALL)
    if upstream.holds and upstream.ending is Ending.ERROR:
        # Held until the client goes: it goes while the call is held (a trickle: early on).
        events_before_hold = 3 if upstream.any_prefix else len(upstream.relayed)
    else:
        # It ends by itself: the client may go anywhere, even after the end (a race).
        events_before_hold = len(upstream.relayed) + 1
    if events_before_hold == 0 or rng.random() < 0.3:
        return ClientPlan(ClientMove.LEAVE_BEFORE_HEADERS)
    return ClientPlan(ClientMove.LEAVE_AFTER_EVENTS, events=rng.randint(1, events_before_hold))


def _bad_input(rng: random.Random, seed: int, index: int, api: Api, stream: bool) -> RequestPlan:
    model = api.route.replace("*", f"{seed}-{index}")
    body = api.request(model, stream=stream)
    headers: tuple[tuple[str, str], ...] = ()
    kind = rng.choice(("malformed", "schema", "unknown-model", "bad-deadline", "oversized"))
    code = "invalid_request"
    if kind == "malformed":
        body = body[: rng.randint(0, len(body) - 1)]
    elif kind == "schema":
        body = json.dumps({"model": model, "stream": stream, "messages": []}).encode()
    elif kind == "unknown-model":
        body = api.request(f"unrouted-{seed}-{index}", stream=stream)
        code = "model_not_found"
    elif kind == "bad-deadline":
        value = rng.choice(("0", "-1", "soon", "nan", "inf"))
        headers = (("x-gateway-idle-timeout", value),)
    else:
        body = b" " * (MAX_REQUEST_BYTES + rng.randint(1, MAX_REQUEST_BYTES)) + body
        code = "request_too_large"
    upstream = UpstreamPlan(f"bad-input-{kind}", Ending.ERROR, codes=frozenset({code}))
    client = ClientPlan(ClientMove.READ_ALL)
    return RequestPlan(seed, index, api, stream, upstream, client, model, body, headers)
