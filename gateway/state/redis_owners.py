"""`RedisOwners`: the owners of Responses ids shared by every replica, so a follow-up finds its
upstream whichever replica it reaches.

Each owner is a key set with an expiry of `ttl` (`state.response_ttl`), its value the owner and
its expiry on the store's clock (JSON). The bound: at most `max_entries`
(`state.max_responses`) owners - an index sorted by the order they were remembered; the
`REMEMBER` script deletes the oldest past it, in the same round trip - and each for its TTL;
Redis's own `maxmemory` policy comes on top (`volatile-ttl` or `allkeys-lru` keep the
gateway's keys from failing writes; `noeviction` turns a full Redis into errors, that is
fallbacks).

This process also keeps the owners it remembered in memory (a `MemoryOwners` of the same
bounds): when Redis does not answer within its budget, `on_error` `open` looks them up there
(what this replica made is still found), `closed` refuses the follow-up with 503. Remembering
never fails: the answer that made the id is already on its way.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from gateway.errors import GatewayOverloaded
from gateway.state.owners import MemoryOwners, ResponseOwner
from gateway.state.redis_admission import OnError
from gateway.state.redis_link import RedisLink, RedisUnavailable
from gateway.state.redis_scripts import REMEMBER

__all__ = ["RedisOwners"]


class RedisOwners:
    """`ResponseOwners` in Redis, with this process's own as the fallback (see the module)."""

    def __init__(
        self,
        link: RedisLink,
        *,
        prefix: str,
        max_entries: int,
        ttl: float,
        clock: Callable[[], float],
        on_error: OnError = "open",
    ) -> None:
        self._link = link
        self._prefix = f"{prefix}owner:"
        self._index = f"{prefix}owners"
        self._order = f"{prefix}owners:order"
        self._max_entries = max_entries
        self._ttl = ttl
        self._clock = clock
        self._on_error = on_error
        self.local = MemoryOwners(max_entries=max_entries, ttl=ttl, clock=clock)

    async def remember(self, response_id: str, owner: ResponseOwner) -> None:
        await self.local.remember(response_id, owner)
        expiry = self._clock() + self._ttl
        value = json.dumps({"u": owner.upstream, "r": owner.route, "c": owner.client, "e": expiry})
        try:
            await self._link.call(
                "owner_remember",
                3,
                self._prefix + response_id,
                self._index,
                self._order,
                response_id,
                value,
                max(1, int(self._ttl * 1000)),
                self._max_entries,
                self._prefix,
                script=REMEMBER,
            )
        except RedisUnavailable:  # never refused: the answer that made it is already out
            self._link.observer.fallback("owner_remember")

    async def owner(self, response_id: str) -> ResponseOwner | None:
        try:
            value = await self._link.call("owner_get", "GET", self._prefix + response_id)
        except RedisUnavailable:
            self._fallback("owner_get")
            return await self.local.owner(response_id)
        if value is None:
            return None
        entry = json.loads(value)
        if entry["e"] <= self._clock():
            return None
        return ResponseOwner(entry["u"], entry["r"], entry["c"])

    async def forget(self, response_id: str) -> None:
        await self.local.forget(response_id)
        self._link.send("owner_forget", "DEL", self._prefix + response_id)
        self._link.send("owner_forget", "ZREM", self._index, response_id)

    def _fallback(self, operation: str) -> None:
        self._link.observer.fallback(operation)
        if self._on_error == "closed":
            raise GatewayOverloaded(
                "the gateway's shared state (Redis) is unavailable, and state.on_error is "
                "closed: stored responses cannot be found until it answers; retry shortly",
                retry_after="1",
            )
