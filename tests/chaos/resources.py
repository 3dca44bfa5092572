"""What this process holds, as the soak measures it, and a watch for leak warnings.

`holdings()` reads Linux's `/proc`: open file descriptors, this process's TCP sockets by state
(`CLOSE_WAIT`: the peer closed and we never did), the connections from the gateway to the
fake upstream (sockets whose remote port is the upstream's), asyncio tasks and resident memory.
Gateway and fake upstream share the process: each pooled upstream connection holds two
descriptors (both ends) and one task (the fake's handler of that connection), which
`Holdings.own_fds` and `Holdings.own_tasks` leave out - what remains must return to its
baseline whatever the pool keeps.

`pool_use(app)` asks the gateway's HTTP providers' transports (`HTTPClient.pool_stats`, which
both implementations give) how many connections are in use and how many idle.

`LeakWatch` collects, while active, what a leak leaves behind in Python: `ResourceWarning`s
("Unclosed client session", "unclosed transport"), warnings raised in `__del__` (unraisable),
and the loop's exception handler calls ("Task was destroyed but it is pending!", "Unclosed
connection", exceptions never retrieved).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import sys
import warnings
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from gateway.server.app_state import PROVIDERS
from gateway.transport import HTTPClient

__all__ = ["Holdings", "LeakWatch", "PoolUse", "holdings", "pool_use", "trim_heap"]

_CLOSE_WAIT = "08"
_ESTABLISHED = "01"


@dataclass(frozen=True, slots=True)
class Holdings:
    fds: int
    close_wait: int  # our sockets whose peer closed while we never did
    upstream_connections: int  # established sockets from the gateway to the fake upstream
    tasks: int
    rss_kib: int

    @property
    def own_fds(self) -> int:
        """Descriptors but the two ends of each pooled upstream connection."""
        return self.fds - 2 * self.upstream_connections

    @property
    def own_tasks(self) -> int:
        """Tasks but the fake upstream's handler of each pooled connection."""
        return self.tasks - self.upstream_connections


def holdings(upstream_port: int) -> Holdings:
    inodes = _socket_inodes()
    sockets = [entry for entry in _tcp_entries() if entry[2] in inodes]
    return Holdings(
        fds=len(os.listdir("/proc/self/fd")),
        close_wait=sum(1 for _, state, _ in sockets if state == _CLOSE_WAIT),
        upstream_connections=sum(
            1 for remote, state, _ in sockets if state == _ESTABLISHED and remote == upstream_port
        ),
        tasks=len(asyncio.all_tasks()),
        rss_kib=_rss_kib(),
    )


def _socket_inodes() -> set[str]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor, for one)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _tcp_entries() -> list[tuple[int, str, str]]:
    """(remote port, state, inode) of every TCP socket of the host, IPv4 and IPv6."""
    entries = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                    entries.append((remote_port, fields[3], fields[9]))
        except FileNotFoundError:
            continue
    return entries


def trim_heap() -> None:
    """Give the C heap's free memory back to the system (glibc's `malloc_trim`), so that
    resident memory measures what is held, not what the allocator keeps for later."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: resident memory includes the allocator's reserve
    libc.malloc_trim(0)


def _rss_kib() -> int:
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


@dataclass(frozen=True, slots=True)
class PoolUse:
    in_use: int
    idle: int
    limit: int  # the sum of the transports' bounds on connections in use


def pool_use(app: web.Application) -> PoolUse:
    in_use = idle = limit = 0
    for provider in app[PROVIDERS].values():
        # An HTTP provider's transport, whichever implementation.
        client: HTTPClient | None = getattr(provider, "_client", None)
        if client is not None:
            stats = client.pool_stats()
            in_use += stats.in_use
            idle += stats.idle
            limit += stats.limit
    return PoolUse(in_use, idle, limit)


@dataclass
class LeakWatch:
    """`with LeakWatch() as leaks:` - `leaks.found` lists what leaked meanwhile."""

    found: list[str] = field(default_factory=list)
    _warnings: Any = None
    _caught: list[warnings.WarningMessage] = field(default_factory=list)
    _hook: Any = None
    _handler: Any = None

    def __enter__(self) -> LeakWatch:
        loop = asyncio.get_running_loop()
        self._warnings = warnings.catch_warnings(record=True)
        self._caught = self._warnings.__enter__()
        warnings.simplefilter("always")
        self._hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        self._handler = loop.get_exception_handler()
        loop.set_exception_handler(self._loop_exception)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        gc.collect()  # finalizers of whatever is unreachable warn now, inside the watch
        asyncio.get_running_loop().set_exception_handler(self._handler)
        sys.unraisablehook = self._hook
        self._warnings.__exit__(exc_type, exc, tb)
        self.found += [f"{w.category.__name__}: {w.message}" for w in self._caught]

    def _unraisable(self, unraisable: Any) -> None:
        self.found.append(f"unraisable in {unraisable.object!r}: {unraisable.exc_value!r}")

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        detail = context.get("exception") or context.get("task") or ""
        self.found.append(f"loop: {context.get('message')} {detail!r}")
