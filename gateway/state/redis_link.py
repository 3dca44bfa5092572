"""`RedisLink`: the one ordered channel a `RedisStore` speaks to Redis through.

Every command - awaited (`call`: an admission, a circuit's probe claim, an owner's lookup) or
sent and forgotten (`send`: a lease's release, a charge, a verdict) - joins one queue, and one
task writes the queue to Redis as a pipeline and reads the answers, batch after batch. So:

- commands reach Redis in the order they were given: a release sent before an admission is
  counted before it, a verdict before the next probe claim (the memory store's order);
- under load, the requests of one event-loop turn share one round trip;
- `send()` never waits: it appends to the queue (at most `max_queue` commands; past it a
  command is dropped and reported as an error - the leases' expiry is the safety net).

The writer speaks on one connection of its own (a redis-py `Connection` with the client's
settings): a batch is packed at once (hiredis's `pack_command`, the packer redis-py itself
uses, without its per-argument pass in Python), written in one go, and its replies are read
in order - no pipeline object, no pool to take the connection from and give back on every
batch. Replies are Redis's own, without redis-py's response callbacks (`PING` answers
`b"PONG"`, `SET` `b"OK"`).

A time budget bounds each `call()` (`timeout`, `state.redis_timeout`) from the moment it is
given: past it, or on any Redis error, it raises `RedisUnavailable` and the store applies its
`on_error` policy. The writer's socket work has the same budget twice over a batch - once
to (connect and) write it, once to read its replies - so a stopped Redis (SIGSTOP) holds
the writer no longer than that. After a failed batch the link stays down for
`retry_after_failure` seconds - calls fail at once rather than each waiting out the budget -
then the next command tries again: the connection, closed on the failure, connects again,
and scripts Redis lost in a restart are loaded again when it answers `NOSCRIPT`. A command
whose caller already gave up is not sent.

Scripts (`Script`) are run by `EVALSHA` with the digest computed here. Every batch's time is
reported to the observer, by operation name (a closed set of the store's own), in the context
(`contextvars`) of the caller that gave the command: a trace's span is the caller's.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hiredis import pack_command
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

__all__ = ["RedisLink", "RedisObserver", "RedisUnavailable", "Script"]

MAX_BATCH = 256


class RedisUnavailable(Exception):
    """Redis did not answer within the budget, or answered with an error."""


class RedisObserver(Protocol):
    """Who hears how the store's Redis calls go (the server's metrics); never waits."""

    def redis_call(self, operation: str, seconds: float) -> None:
        """A command of `operation` was answered after `seconds` (its batch's round trip)."""

    def redis_error(self, operation: str) -> None:
        """A command of `operation` failed: timeout, connection, error reply, or dropped."""

    def fallback(self, operation: str) -> None:
        """The store decided without Redis (`state.on_error`) for `operation`."""


class _Unobserved:
    def redis_call(self, operation: str, seconds: float) -> None:
        pass

    def redis_error(self, operation: str) -> None:
        pass

    def fallback(self, operation: str) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, run by its SHA-1 digest."""

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


@dataclass(slots=True)
class _Command:
    operation: str
    args: tuple[Any, ...]
    script: Script | None
    future: asyncio.Future[Any] | None  # None: sent and forgotten
    on_result: Callable[[Any], None] | None = None
    context: contextvars.Context = field(default_factory=contextvars.copy_context)


class RedisLink:
    """Commands to one Redis, in order, pipelined by one writer task (see the module)."""

    def __init__(
        self,
        client: Redis,
        *,
        timeout: float,
        max_queue: int = 10_000,
        retry_after_failure: float = 0.5,
    ) -> None:
        self._client = client
        self._connection: AbstractConnection | None = None
        self.timeout = timeout
        self._max_queue = max_queue
        self._retry_after_failure = retry_after_failure
        self._queue: deque[_Command] = deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._down_until = 0.0
        self._closed = False
        self.observer: RedisObserver = _Unobserved()

    @property
    def down(self) -> bool:
        """Whether the last batch failed less than `retry_after_failure` seconds ago."""
        return time.monotonic() < self._down_until

    async def call(self, operation: str, *args: Any, script: Script | None = None) -> Any:
        """The answer to one command (or `script` with `args`: keys count, keys, argv), or
        `RedisUnavailable` within the budget."""
        if self.down or self._closed:
            self.observer.redis_error(operation)
            raise RedisUnavailable(f"Redis is unavailable ({operation})")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(_Command(operation, args, script, future))
        try:
            async with asyncio.timeout(self.timeout):
                return await future  # cancelled with the caller: then it is not sent
        except TimeoutError:
            self.observer.redis_error(operation)
            raise RedisUnavailable(f"Redis did not answer within {self.timeout:g}s") from None

    def send(
        self,
        operation: str,
        *args: Any,
        script: Script | None = None,
        on_result: Callable[[Any], None] | None = None,
    ) -> None:
        """Give Redis one command without waiting for it (dropped while the link is down or
        its queue is full); `on_result` hears its answer, if it comes."""
        if self.down or self._closed or len(self._queue) >= self._max_queue:
            self.observer.redis_error(operation)
            return
        self._enqueue(_Command(operation, args, script, None, on_result))

    async def flush(self) -> None:
        """Wait until every command given so far has been answered (or failed): a `PING` sent
        after them (`RedisUnavailable` past the budget)."""
        await self.call("flush", "PING")

    async def aclose(self) -> None:
        """Send what is queued (within one budget), then stop the writer."""
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is not None:
            self._wake.set()
            try:
                async with asyncio.timeout(self.timeout * 2):
                    await asyncio.shield(writer)
            except TimeoutError:
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
        if self._connection is not None:
            await self._connection.disconnect()
        await self._client.aclose()

    def _enqueue(self, command: _Command) -> None:
        self._queue.append(command)
        self._wake.set()
        if self._writer is None and not self._closed:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch: list[_Command] = []
            while queue and len(batch) < MAX_BATCH:
                command = queue.popleft()
                if command.future is None or not command.future.done():
                    batch.append(command)
            if batch:
                await self._send_batch(batch)

    async def _send_batch(self, batch: list[_Command]) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout * 2):  # the sockets' own timeouts first
                results = await self._execute(batch)
                missing = [
                    i for i, r in enumerate(results) if isinstance(r, redis_errors.NoScriptError)
                ]
                if missing:  # Redis restarted (or flushed its scripts): load them, once more
                    again = [batch[i] for i in missing]
                    for script in {c.script.sha: c.script for c in again if c.script}.values():
                        await self._client.script_load(script.source)
                    for i, result in zip(missing, await self._execute(again), strict=True):
                        results[i] = result
        except (redis_errors.RedisError, OSError, TimeoutError) as exc:
            if self._connection is not None:  # no reply of this batch is read after it
                await self._connection.disconnect(nowait=True)
            self._down_until = time.monotonic() + self._retry_after_failure
            failure = RedisUnavailable(f"Redis is unavailable: {type(exc).__name__}")
            for command in batch:
                command.context.run(self.observer.redis_error, command.operation)
                _settle(command, failure)
            return
        seconds = time.monotonic() - started
        for command, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                command.context.run(self.observer.redis_error, command.operation)
                _settle(command, RedisUnavailable(f"Redis refused {command.operation}"))
                continue
            command.context.run(self.observer.redis_call, command.operation, seconds)
            _settle(command, result)

    async def _execute(self, batch: Sequence[_Command]) -> list[Any]:
        """The replies to `batch`, in order: an error reply as its `ResponseError`."""
        connection = self._connection
        if connection is None:
            connection = self._connection = _connection_of(self._client)
        try:
            packed = b"".join(
                pack_command(("EVALSHA", c.script.sha, *c.args) if c.script else c.args)
                for c in batch
            )
        except TypeError as exc:  # an argument neither str, int, float nor bytes
            raise redis_errors.DataError(str(exc)) from exc
        results: list[Any] = []
        async with asyncio.timeout(self.timeout) as budget:  # connecting again first, if closed
            await connection.send_packed_command(packed, check_health=False)
            budget.reschedule(asyncio.get_running_loop().time() + self.timeout)
            for _ in batch:
                try:
                    results.append(await connection.read_response())
                except redis_errors.ResponseError as refused:
                    results.append(refused)
        return results


def _connection_of(client: Redis) -> AbstractConnection:
    """A connection of the link's own, with `client`'s settings but no socket timeout: the
    link bounds each batch itself (one `asyncio.timeout`, cheaper than redis-py's timeout of
    every read and `wait_for` of every write)."""
    pool = client.connection_pool
    connection: AbstractConnection = pool.connection_class(
        **{**pool.connection_kwargs, "socket_timeout": None}
    )
    return connection


def _settle(command: _Command, result: Any) -> None:
    future = command.future
    if future is not None:
        if not future.done():
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        return
    if command.on_result is not None and not isinstance(result, BaseException):
        command.on_result(result)
