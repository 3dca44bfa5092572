"""What the upstream of one chaos request does, and what its client must then receive.

An `UpstreamPlan` pairs a fake-upstream behaviour with the contract's verdict on it: the frames
the gateway must relay (`relayed`, byte-exact and in order; noise the upstream mixes in is not
among them), how the response must end (`Ending`), and for an error the codes it may carry.
`tests.chaos.faults` builds one per fault of the foundation's list, each drawn from `Dice` (a
seeded generator and the request's API).

A plan that `holds` never ends by itself (a stall, a stream longer than any test): only the
gateway closing the connection ends its handler - at a deadline, at the terminal event, or
because the client left. With `Dice.long` set (the client will leave), its deadlines are long,
so that only the client's leaving can end it in time.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass

from tests.chaos.apis import Api
from tests.support.fake_upstream import Behaviour

__all__ = [
    "LONG_DEADLINE",
    "MAX_EVENT_BYTES",
    "MAX_RESPONSE_BYTES",
    "Dice",
    "Ending",
    "Fault",
    "UpstreamPlan",
]

LONG_DEADLINE = "30"  # seconds: beyond the 10 s an upstream call is given to end
MAX_EVENT_BYTES = 65_536  # the chaos gateway's limits.max_event_bytes
MAX_RESPONSE_BYTES = 262_144  # ... and limits.max_response_bytes


class Ending(enum.Enum):
    MARKER = "marker"  # the upstream's terminal marker is the last relayed frame
    TRAILER = "trailer"  # complete without its marker: the gateway appends the trailer
    UPSTREAM_ERROR = "upstream_error"  # the upstream's own error event is the last frame
    ERROR = "error"  # the gateway's error: a status before commit, one error event after
    ANSWER = "answer"  # `stream: false`: the upstream's answer, as it is


@dataclass(frozen=True, slots=True)
class UpstreamPlan:
    fault: str
    ending: Ending
    behaviour: Behaviour | None = None  # None: the request never reaches the fake upstream
    relayed: tuple[bytes, ...] = ()
    codes: frozenset[str] = frozenset()  # ERROR: the codes the error may carry
    headers: tuple[tuple[str, str], ...] = ()  # deadline headers the client sends
    holds: bool = False
    any_prefix: bool = False  # ERROR after any prefix of `relayed` (a total deadline)
    answer: bytes = b""  # ANSWER: the body
    retry_after: str | None = None  # the upstream's Retry-After, which must pass on
    dead: bool = False  # routed to an upstream that refuses connections

    @property
    def outcome_codes(self) -> frozenset[str]:
        """The error codes the gateway may record (empty: `completed`)."""
        if self.ending is Ending.ERROR:
            return self.codes
        if self.ending is Ending.UPSTREAM_ERROR:
            return frozenset({"upstream_error_event"})
        return frozenset()

    @property
    def reaches_upstream(self) -> bool:
        return self.behaviour is not None


@dataclass(slots=True)
class Dice:
    rng: random.Random
    api: Api
    long: bool = False  # the client will leave: held calls get long deadlines

    def deadline(self, low: float = 0.05, high: float = 0.4) -> str:
        """A deadline header's value: short (`low`..`high` s) unless the client will leave."""
        return LONG_DEADLINE if self.long else f"{self.rng.uniform(low, high):.3f}"

    def texts(self, low: int = 1, high: int = 6) -> list[str]:
        words = ("Hel", "lo", " wor", "ld", "!", " é", "\u2028", ' "q"', "\\n", "😀")
        return ["".join(self.rng.choices(words, k=3)) for _ in range(self.rng.randint(low, high))]

    def body(self) -> list[bytes]:
        """A stream's events up to (not including) its completing one."""
        return self.api.events(self.texts(), finish=False)

    def complete(self) -> list[bytes]:
        """A complete answer's events, without the marker."""
        return self.api.events(self.texts(), finish=True)

    def noisy(self, frames: list[bytes]) -> list[bytes]:
        """`frames` with noise blocks between them (never before the first)."""
        out = list(frames)
        for _ in range(self.rng.choice((0, 0, 1, 2)) if len(out) > 1 else 0):
            out.insert(self.rng.randint(1, len(out) - 1), self.rng.choice(self.api.noise))
        return out

    def writes(self, frames: list[bytes]) -> list[bytes]:
        """The frames' bytes as the upstream writes them: one write each, or cut anywhere."""
        data = b"".join(frames)
        if self.rng.random() < 0.5 or len(data) < 2:
            return list(frames)
        cuts = sorted(self.rng.sample(range(1, len(data)), min(len(data) - 1, 6)))
        return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]

    def chunked(self) -> bool:
        return self.rng.random() < 0.7


Fault = Callable[[Dice], UpstreamPlan]
