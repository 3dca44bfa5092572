"""The client side of one chaos request: send it, then read or leave as its plan says.

`play` returns an `Exchange`: what the client got, whether it read the body to its end, whether
it left early, and the exception if the response failed under a client that did not leave
(always a violation: the gateway ends every response it started properly).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.chaos.apis import HEARTBEAT
from tests.chaos.plans import ClientMove, RequestPlan

__all__ = ["Exchange", "count_events", "narrow_session", "play"]

_NARROW = 65_536  # bytes: a slow reader's socket receive buffer (no autotuning to megabytes)
_READ_BUFFER = 65_536  # bytes: its aiohttp read buffer (the reader pauses after each read)


@dataclass(slots=True)
class Exchange:
    status: int | None = None  # None: the client left before the headers came
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased
    body: bytes = b""
    finished: bool = False  # the body was read to its end
    left: bool = False  # the client closed its connection before the end
    failure: str | None = None  # how the response failed, for a client that stayed


def count_events(body: bytes | bytearray) -> int:
    """Complete frames in `body` other than the gateway's heartbeats."""
    frames = body.split(b"\n\n")[:-1]
    return sum(1 for frame in frames if frame + b"\n\n" != HEARTBEAT)


def narrow_session(limit: int, keepalive: float) -> aiohttp.ClientSession:
    """A session whose connections buffer little: a reader that pauses soon makes the gateway
    wait on its writes (loopback sockets otherwise buffer megabytes)."""
    connector = aiohttp.TCPConnector(
        limit=limit, keepalive_timeout=keepalive, socket_factory=_narrow_socket
    )
    return aiohttp.ClientSession(connector=connector, read_bufsize=_READ_BUFFER)


def _narrow_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=kind, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _NARROW)
    return sock


async def play(
    session: aiohttp.ClientSession, url: str, plan: RequestPlan, call_started: asyncio.Event
) -> Exchange:
    """Send `plan`'s request to the gateway at `url` and act as its client plan says.

    `call_started` is set once the upstream has the request: a client that leaves before the
    headers waits for it, so that it leaves while the gateway waits on the upstream.
    """
    headers = {
        "Content-Type": "application/json",
        "x-request-id": plan.request_id,
        **dict(plan.headers),
    }
    exchange = Exchange()
    request = session.post(url + plan.api.path, data=plan.body, headers=headers)
    try:
        if plan.client.move is ClientMove.LEAVE_BEFORE_HEADERS:
            await _leave_before_headers(request, call_started, exchange)
            return exchange
        async with request as response:
            exchange.status, exchange.headers = response.status, _lowered(response.headers)
            await _read(response, plan, exchange)
    except aiohttp.ClientError as exc:
        if not exchange.left:
            exchange.failure = repr(exc)
    return exchange


async def _leave_before_headers(
    request: Awaitable[aiohttp.ClientResponse],
    call_started: asyncio.Event,
    exchange: Exchange,
) -> None:
    sending = asyncio.ensure_future(request)
    started = asyncio.ensure_future(call_started.wait())
    try:
        await asyncio.wait([sending, started], return_when=asyncio.FIRST_COMPLETED)
    finally:
        started.cancel()
    exchange.left = True
    sending.cancel()
    await asyncio.wait([sending])
    if sending.cancelled():
        return
    response = sending.result()  # the headers came first: leave right after them
    exchange.status, exchange.headers = response.status, _lowered(response.headers)
    response.close()


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


async def _read(response: aiohttp.ClientResponse, plan: RequestPlan, exchange: Exchange) -> None:
    move = plan.client.move
    if move is ClientMove.READ_ALL:
        exchange.body = await response.read()
        exchange.finished = True
        return
    body = bytearray()
    content = response.content
    while True:
        chunk = await content.readany()
        if not chunk:
            exchange.finished = True
            break
        body += chunk
        if move is ClientMove.LEAVE_AFTER_EVENTS and count_events(body) >= plan.client.events:
            exchange.left = True
            response.close()
            break
        if move is ClientMove.READ_SLOWLY:
            await asyncio.sleep(plan.client.pause)
    exchange.body = bytes(body)
