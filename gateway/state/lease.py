"""`Lease`: the one vocabulary of every limit the gateway holds a place in.

A limiter - the gateway's admission (requests in flight overall and per key, a key's rate), a
backend's slots and circuit, an upstream's connections - is asked with an `acquire`-style
coroutine, which either returns a `Lease` at once (or, for a limiter that may wait, within its
deadline) or raises the `GatewayError` the refusal stands for. The holder gives the place back
with `release()` once, however the work ended; a second `release()` does nothing.

`release()` never waits: it runs in `finally` blocks of tasks being cancelled (a client that
left), where an `await` could itself be cancelled and leak the place. A shared store records
the release in the background, and its leases expire on their own, so a dead replica's places
free up.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Lease"]


@runtime_checkable
class Lease(Protocol):
    """A place held in a limit, given back by `release()` (idempotent, never waits)."""

    def release(self) -> None: ...
