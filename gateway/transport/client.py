"""The transport's interface: what a provider needs to make one HTTP call and read its body.

An `HTTPClient` holds the connections to one upstream (pooled, at most its `max_connections` in
use at once) and sends a call through them (a POST, or a GET or DELETE of a resource); the
`HTTPResponse` it returns is the answer whose body is still to be read. A provider builds the
URL, the headers and the body, and reads the status and the body's bytes: it never sees the HTTP
library underneath. Two implementations exist: `Http1Client` (asyncio protocols and httptools'
parser, the default) and `AiohttpClient` (aiohttp's client); one replaces the other without
touching providers, and one contract suite (tests/transport/test_client_contract.py) runs on
both.

Invariants every implementation keeps:
- `send` and the response's methods raise only `GatewayError`s (and `CancelledError`): the
  library's and the OS's exceptions are translated inside the implementation, in one place;
- `send` takes one of the upstream's connections before it connects, waiting for one at most
  the `connect` deadline (then `GatewayOverloaded`, never hanging), and the response gives it
  back when it is closed - or `send` does, if it raises;
- `on_sent` is called once the request's head is written, so the first-byte clock starts when
  the request is sent, not when it was queued or connected;
- a call's context (`ctx`) that ends while the head is awaited - the request written, the
  upstream perhaps generating - closes its connection at once, in that loop turn, as `abort()`
  does for an answer (`Http1Client`; `AiohttpClient` cannot, see there);
- every status is returned, 2xx or not: what a status means is the provider's business;
- `HTTPResponse.aclose()` is idempotent and, unless the body was read to its end, closes the
  connection, so the upstream sees the close and stops generating; `abort()` closes it at
  once, for a client known gone before its handler is cancelled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from gateway.streaming import Context

__all__ = ["HTTPClient", "HTTPResponse", "PoolStats"]


@dataclass(frozen=True, slots=True)
class PoolStats:
    """What an `HTTPClient`'s pools hold now: connections in use (a response not yet closed),
    idle ones kept for the next call, and the bound on those in use."""

    in_use: int
    idle: int
    limit: int


class HTTPResponse(Protocol):
    """An upstream's answer, head read, body still to be read."""

    status: int
    #: Looked up case-insensitively (`headers.get("retry-after")` finds `Retry-After`).
    headers: Mapping[str, str]
    #: The media type of `Content-Type`, lowercased, without parameters (`text/event-stream`).
    content_type: str

    def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes (decompressed), each read as it arrived, bounded in size; bytes
        received before the connection was cut come before the cut's error."""
        ...

    async def read_bounded(self, limit: int) -> bytes:
        """At most `limit` bytes of the body; the rest is not read."""
        ...

    async def aclose(self) -> None:
        """Give the connection back: to the pool if the body was read to its end, else closed."""
        ...

    def abort(self) -> None:
        """Close the connection now, synchronously: the upstream sees the close at once, not
        when the event loop next turns (a busy loop's turn takes milliseconds). No read may
        follow; `aclose()` still gives the connection's place back."""
        ...


class HTTPClient(Protocol):
    """The pooled connections to one upstream, and the one call a provider makes through them."""

    async def start(self) -> None:
        """Acquire the pools; `send` does it too if it was not done."""
        ...

    async def aclose(self) -> None:
        """Close the pools and every connection in them."""
        ...

    def pool_stats(self) -> PoolStats:
        """The connections held now (for soak tests and diagnostics)."""
        ...

    async def send(
        self,
        method: str,
        url: str,
        *,
        body: bytes,
        headers: Mapping[str, str],
        stream: bool,
        connect: float | None,
        on_sent: Callable[[], None] | None = None,
        ctx: Context | None = None,
    ) -> HTTPResponse:
        """Send `method` with `body` (empty: none) to `url` (never following a redirect) and return
        the answer once its head arrived. `stream` says a long-lived event stream is
        expected (its connection buffers little) rather than a whole answer; `connect`
        bounds the wait for a connection and the time to get connected (None: no bound).
        `ctx`, the call's context: when it ends while the head is awaited, the connection is
        closed at once (the call then fails as its context's scope says, or as an aborted
        connection)."""
        ...
