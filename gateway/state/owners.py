"""Which upstream holds each stored Responses id, so that follow-ups reach it.

A Responses upstream keeps the responses it made (`store`, background runs): a later turn
(`previous_response_id`), a `GET`, `DELETE`, `cancel` or `input_items` of one must go to the
upstream that made it, and to no other - one that does not know the id would refuse it, or
worse, start a new conversation. The gateway remembers, for each response id an answer
carried, its `ResponseOwner`: the upstream, the route that made it (whose limits a follow-up
keeps) and the gateway key's holder that asked (a follow-up of another key finds nothing: a
response is its creator's).

`ResponseOwners` is the store's interface (coroutines: a shared store does I/O);
`MemoryOwners` keeps at most `max_entries` ids for `ttl` seconds each in this process, the
oldest forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["MemoryOwners", "ResponseOwner", "ResponseOwners"]


@dataclass(frozen=True, slots=True)
class ResponseOwner:
    """Where a stored response lives, and whose it is."""

    upstream: str  # the upstream's configured name
    route: str  # the route's configured name or pattern
    client: str | None  # the gateway key holder's name (None: no gateway keys)


class ResponseOwners(Protocol):
    """The owners of the response ids the gateway has seen made."""

    async def remember(self, response_id: str, owner: ResponseOwner) -> None:
        """`response_id` was made on `owner.upstream` (again: the owner is replaced)."""
        ...

    async def owner(self, response_id: str) -> ResponseOwner | None:
        """The owner of `response_id`, or None: never seen, forgotten or expired."""
        ...

    async def forget(self, response_id: str) -> None:
        """`response_id` is gone (deleted upstream); idempotent."""
        ...


class MemoryOwners:
    """`ResponseOwners` in this process: at most `max_entries`, each for `ttl` seconds."""

    def __init__(
        self, *, max_entries: int, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_entries = max_entries
        self._ttl = ttl
        self._clock = clock
        #: id -> (owner, expiry), oldest remembered first (so also soonest to expire).
        self._owners: OrderedDict[str, tuple[ResponseOwner, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._owners)

    async def remember(self, response_id: str, owner: ResponseOwner) -> None:
        owners = self._owners
        owners.pop(response_id, None)
        owners[response_id] = (owner, self._clock() + self._ttl)
        while len(owners) > self._max_entries:
            owners.popitem(last=False)

    async def owner(self, response_id: str) -> ResponseOwner | None:
        self._expire()
        entry = self._owners.get(response_id)
        return None if entry is None else entry[0]

    async def forget(self, response_id: str) -> None:
        self._owners.pop(response_id, None)

    def _expire(self) -> None:
        """Drop the expired entries (all at the front: every entry has the same ttl)."""
        owners, now = self._owners, self._clock()
        while owners:
            _, (_, expiry) = next(iter(owners.items()))
            if expiry > now:
                return
            owners.popitem(last=False)
