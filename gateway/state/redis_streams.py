"""`RedisStreamBuffers`: the buffers of resumable streams in Redis, so any replica resumes any
stream.

Per stream: a Redis stream `<prefix>stream:<id>` whose entries are the events (entry id
`<n>-0` for event `n`, one field: the frame), a hash `...:meta` (owner, API, route, status,
the last id, the bytes kept, a cancel request, an alias, the client's request) and a lease
`...:lease` that the producing replica refreshes every `lease_ttl / 3` seconds while the stream
is live.

- The producer's `append` is one script per relayed batch (XADD of each event, the caps:
  `max_events` and `max_bytes`, oldest first), sent without waiting through the store's
  ordered `RedisLink`; its answer says whether another replica asked to cancel. `end` sets the
  status and the expiry (`ttl`) of the stream, its meta and alias, and drops the lease.
- The producing replica keeps its own copy in memory (`MemoryStreamBuffers`, for as long as
  the stream runs and `local_ttl` after): its client's handler follows the live tail there,
  with no Redis read per event.
- A reader on another replica reads Redis by a bounded poll, not a blocking read: one small
  script through the link (its time budget, no connection of its own) every `poll` seconds
  while it has caught up - a blocking `XREAD` would hold a connection per resumed client and
  outlive the link's budget. The script answers the entries after the reader's id with the
  status and whether the lease is held, atomically, so a final status is seen only after
  every event before it. Entries must be consecutive: a hole (dropped by the caps, or lost
  while Redis was down) ends the read with `GAP`, never a stream with a hole.
- `take_over` is one script: a live stream whose lease is gone gets a lease again, this
  replica's, with `SET ... NX` (two replicas that find it orphaned at once: one wins), and
  answers its meta and the request kept with it. The taker's local copy starts after the last
  kept event; a reader on that replica from before it reads Redis.

When Redis is down, `create` applies `on_error`: `open` keeps the stream in this process only
(resumable here, counted as a fallback), `closed` refuses it (503).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from gateway.errors import GatewayOverloaded
from gateway.state.memory_streams import MemoryStream, MemoryStreamBuffers, MemoryStreamReader
from gateway.state.redis_link import RedisLink, RedisUnavailable, Script
from gateway.state.stream_buffers import GAP, LIVE, ORPHANED, StreamInfo, Takeover

__all__ = ["RedisStreamBuffers"]

#: How long a live stream's meta is kept at most (its producer ends it long before).
_LIVE_TTL = 24 * 3600

_CREATE = Script(
    "stream_create",
    """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], 'api', ARGV[1], 'route', ARGV[2], 'status', 'live', 'last', 0,
           'bytes', 0, 'dropped', 0)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'owner', ARGV[4]) end
if ARGV[8] ~= '' then redis.call('HSET', KEYS[2], 'request', ARGV[8]) end
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('SET', KEYS[3], ARGV[6], 'PX', ARGV[7])
return 1
""",
)

_APPEND = Script(
    "stream_append",
    """
if redis.call('HGET', KEYS[2], 'status') ~= 'live' then return 0 end
local added = 0
for i = 3, #ARGV, 2 do
  redis.call('XADD', KEYS[1], ARGV[i] .. '-0', 'f', ARGV[i + 1])
  added = added + #ARGV[i + 1]
end
local size = tonumber(redis.call('HGET', KEYS[2], 'bytes')) + added
local max_events, max_bytes = tonumber(ARGV[1]), tonumber(ARGV[2])
local n = redis.call('XLEN', KEYS[1])
while n > 1 and (n > max_events or size > max_bytes) do
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  redis.call('XDEL', KEYS[1], oldest[1])
  size = size - #oldest[2][2]
  n = n - 1
  redis.call('HSET', KEYS[2], 'dropped', string.match(oldest[1], '^(%d+)'))
end
redis.call('HSET', KEYS[2], 'bytes', size, 'last', ARGV[#ARGV - 1])
redis.call('EXPIRE', KEYS[1], LIVE_TTL)
if redis.call('HGET', KEYS[2], 'cancel') then return 1 end
return 0
""".replace("LIVE_TTL", str(_LIVE_TTL)),
)

_END = Script(
    "stream_end",
    """
if redis.call('HGET', KEYS[2], 'status') == 'live' then
  redis.call('HSET', KEYS[2], 'status', ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[3])
local alias = redis.call('HGET', KEYS[2], 'alias')
if alias then redis.call('EXPIRE', ARGV[3] .. alias, ARGV[2]) end
return 1
""",
)

_LEASE = Script(
    "stream_lease",
    """
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
if redis.call('HGET', KEYS[1], 'cancel') then return 1 end
return 0
""",
)

_TAKE = Script(
    "stream_take",
    """
local meta = redis.call('HMGET', KEYS[1], 'status', 'last', 'owner', 'api', 'route', 'request')
if meta[1] ~= 'live' or tonumber(ARGV[3]) > tonumber(meta[2]) then return false end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local owned = 0
if meta[3] then owned = 1 end
return {tonumber(meta[2]), owned, meta[3] or '', meta[4], meta[5] or '', meta[6] or ''}
""",
)

_READ = Script(
    "stream_read",
    """
local meta = redis.call('HMGET', KEYS[2], 'status', 'last', 'dropped')
if not meta[1] then return {false} end
local entries = redis.call('XRANGE', KEYS[1], ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
return {entries, meta[1], tonumber(meta[2]), tonumber(meta[3]), redis.call('EXISTS', KEYS[3])}
""",
)

_CANCEL = Script(
    "stream_cancel",
    """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'live' then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[1], 'status', 'cancelled')
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], 'cancel', 1)
return 1
""",
)


class RedisStreamBuffers:
    """`StreamBuffers` shared through Redis (see the module)."""

    def __init__(
        self,
        link: RedisLink,
        *,
        prefix: str,
        replica: str,
        ttl: float,
        max_events: int,
        max_bytes: int,
        on_error: str = "open",
        lease_ttl: float = 3.0,
        poll: float = 0.05,
        local_ttl: float = 5.0,
    ) -> None:
        self._link = link
        self._prefix = prefix + "stream:"
        self._alias_prefix = prefix + "stream-alias:"
        self._replica = replica
        self._ttl = max(1, round(ttl))
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._on_error = on_error
        self._lease_ms = max(1, round(lease_ttl * 1000))
        self._refresh = lease_ttl / 3
        self.poll = poll
        self._local = MemoryStreamBuffers(
            ttl=min(ttl, local_ttl), max_events=max_events, max_bytes=max_bytes
        )

    def _keys(self, stream_id: str) -> tuple[str, str, str]:
        base = self._prefix + stream_id
        return base, base + ":meta", base + ":lease"

    async def create(
        self, stream_id: str, info: StreamInfo, request: bytes = b""
    ) -> RedisStreamWriter:
        local = self._local.make(stream_id, info)
        owner = info.owner
        try:
            await self._link.call(
                "stream_create",
                3,
                *self._keys(stream_id),
                info.api,
                info.route,
                "" if owner is None else "1",
                owner or "",
                _LIVE_TTL,
                self._replica,
                self._lease_ms,
                request,
                script=_CREATE,
            )
        except RedisUnavailable:
            self._link.observer.fallback("stream_create")
            if self._on_error == "closed":
                local.end("failed")
                raise GatewayOverloaded(
                    "the shared state store is unavailable and state.on_error is closed: "
                    "resumable streams cannot be kept until it answers; retry shortly",
                    retry_after="1",
                ) from None
            return RedisStreamWriter(self, stream_id, local, shared=False)
        return RedisStreamWriter(self, stream_id, local, shared=True)

    async def info(self, stream_id: str) -> StreamInfo | None:
        local = self._local.stream(stream_id)
        if local is not None:
            return local.info
        _, meta, _ = self._keys(stream_id)
        try:
            owner, api, status, route = await self._link.call(
                "stream_info", "HMGET", meta, "owner", "api", "status", "route"
            )
        except RedisUnavailable:
            self._link.observer.fallback("stream_info")
            return None
        if api is None:
            return None
        return StreamInfo(
            None if owner is None else owner.decode(),
            api.decode(),
            status.decode(),
            route.decode() if route is not None else "",
        )

    async def take_over(self, stream_id: str, after: int) -> Takeover | None:
        if self._local.stream(stream_id) is not None:
            return None  # this replica's own (or taken over already)
        _, meta, lease = self._keys(stream_id)
        try:
            answer = await self._link.call(
                "stream_take", 2, meta, lease, self._replica, self._lease_ms, after, script=_TAKE
            )
        except RedisUnavailable:
            self._link.observer.fallback("stream_take")
            return None
        if not answer:
            return None
        last, owned, owner, api, route, request = answer
        info = StreamInfo(owner.decode() if owned else None, api.decode(), LIVE, route.decode())
        local = self._local.make(stream_id, info, after=int(last))
        writer = RedisStreamWriter(self, stream_id, local, shared=True)
        return Takeover(info, writer, int(last), bytes(request))

    def reader(self, stream_id: str, after: int) -> MemoryStreamReader | RedisStreamReader:
        local = self._local.stream(stream_id)
        if local is not None and after >= local.kept_after:
            return MemoryStreamReader(local, after)
        return RedisStreamReader(self, stream_id, after)

    async def cancel(self, stream_id: str) -> None:
        local = self._local.stream(stream_id)
        if local is not None:
            local.cancel()
            return
        _, meta, lease = self._keys(stream_id)
        try:
            await self._link.call("stream_cancel", 2, meta, lease, self._ttl, script=_CANCEL)
        except RedisUnavailable:
            self._link.observer.fallback("stream_cancel")

    async def name(self, alias: str, stream_id: str) -> None:
        await self._local.name(alias, stream_id)
        _, meta, _ = self._keys(stream_id)
        self._link.send(
            "stream_alias", "SET", self._alias_prefix + alias, stream_id, "EX", _LIVE_TTL
        )
        self._link.send("stream_alias", "HSET", meta, "alias", alias)

    async def named(self, alias: str) -> str | None:
        found = await self._local.named(alias)
        if found is not None:
            return found
        try:
            value = await self._link.call("stream_alias", "GET", self._alias_prefix + alias)
        except RedisUnavailable:
            self._link.observer.fallback("stream_alias")
            return None
        return None if value is None else str(value.decode())

    def close(self) -> None:
        self._local.close()

    # --- the producer's and the reader's commands ------------------------------------------------

    def send_append(
        self,
        stream_id: str,
        first_id: int,
        frames: Sequence[bytes],
        on_result: Callable[[Any], None],
    ) -> None:
        base, meta, _ = self._keys(stream_id)
        args: list[Any] = [self._max_events, self._max_bytes]
        for offset, frame in enumerate(frames):
            args += (first_id + offset, frame)
        self._link.send("stream_append", 2, base, meta, *args, script=_APPEND, on_result=on_result)

    def send_end(self, stream_id: str, status: str) -> None:
        self._link.send(
            "stream_end",
            3,
            *self._keys(stream_id),
            status,
            self._ttl,
            self._alias_prefix,
            script=_END,
        )

    def send_lease(self, stream_id: str, on_result: Callable[[Any], None]) -> None:
        _, meta, lease = self._keys(stream_id)
        self._link.send(
            "stream_lease",
            2,
            meta,
            lease,
            self._replica,
            self._lease_ms,
            script=_LEASE,
            on_result=on_result,
        )

    @property
    def refresh_every(self) -> float:
        return self._refresh

    async def read(self, stream_id: str, after: int, count: int = 512) -> list[Any]:
        return list(
            await self._link.call(
                "stream_read", 3, *self._keys(stream_id), after + 1, count, script=_READ
            )
        )


class RedisStreamWriter:
    """The producer's side of one buffer: the local copy, and Redis (unless it was down at the
    stream's start); the lease refreshed while the stream is live."""

    __slots__ = ("_buffers", "_cancel", "_local", "_shared", "_stream_id", "_timer")

    def __init__(
        self, buffers: RedisStreamBuffers, stream_id: str, local: MemoryStream, *, shared: bool
    ) -> None:
        self._buffers = buffers
        self._stream_id = stream_id
        self._local = local
        self._shared = shared
        self._cancel: Callable[[], None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        if shared:
            self._arm()

    def append(self, first_id: int, frames: Sequence[bytes]) -> None:
        self._local.append(first_id, frames)
        if self._shared:
            self._buffers.send_append(self._stream_id, first_id, frames, self._heard)

    def end(self, status: str) -> None:
        if not self._local.live:
            return
        self._local.end(status)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._shared:
            self._buffers.send_end(self._stream_id, status)

    def on_cancel(self, callback: Callable[[], None]) -> None:
        self._local.on_cancel(callback)

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._buffers.refresh_every, self._refresh)

    def _refresh(self) -> None:
        if not self._local.live:
            return
        self._buffers.send_lease(self._stream_id, self._heard)
        self._arm()

    def _heard(self, cancel_asked: Any) -> None:
        """A command's answer: 1 when another replica asked to cancel the stream."""
        if cancel_asked == 1 and self._local.live:
            self._local.cancel()


class RedisStreamReader:
    """A `StreamReader` of a stream produced on another replica: Redis, polled."""

    __slots__ = ("_buffers", "_ending", "_failing_since", "_stream_id", "last_id")

    def __init__(self, buffers: RedisStreamBuffers, stream_id: str, after: int) -> None:
        self._buffers = buffers
        self._stream_id = stream_id
        self.last_id = after
        self._ending = ""
        self._failing_since: float | None = None

    @property
    def ending(self) -> str:
        return self._ending

    async def next(self) -> bytes | None:
        if self._ending:
            return None
        loop = asyncio.get_running_loop()
        while True:
            try:
                answer = await self._buffers.read(self._stream_id, self.last_id)
            except RedisUnavailable:
                now = loop.time()
                since = self._failing_since = self._failing_since or now
                if now - since > self._buffers.refresh_every * 3:
                    self._ending = ORPHANED  # nobody can tell how it goes on
                    return None
                await asyncio.sleep(self._buffers.poll)
                continue
            self._failing_since = None
            data = self._taken(answer)
            if data is not None or self._ending:
                return data
            await asyncio.sleep(self._buffers.poll)

    def _taken(self, answer: list[Any]) -> bytes | None:
        """The frames of one read's answer (setting `_ending` when the read is over)."""
        if answer[0] is None or answer[0] is False or len(answer) < 5:
            self._ending = GAP  # expired, or never was
            return None
        entries, status, last, dropped, leased = answer
        if self.last_id < int(dropped or 0):
            self._ending = GAP
            return None
        frames: list[bytes] = []
        expected = self.last_id + 1
        for entry_id, fields in entries:
            number = int(entry_id.split(b"-", 1)[0])
            if number != expected:
                self._ending = GAP  # a hole: never a stream that looks whole
                break
            frames.append(fields[1])
            expected += 1
        if frames:
            self.last_id = expected - 1
            return b"".join(frames)
        if self._ending:
            return None
        status = status.decode()
        if status != LIVE:
            self._ending = status if int(last or 0) <= self.last_id else GAP
        elif not leased:
            self._ending = ORPHANED
        return None
