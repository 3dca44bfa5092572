"""HTTP/1.1 over a raw socket: for requests no HTTP client library would send.

Slow clients (a byte at a time), oversized or malformed heads, bodies that never come: the
tests write bytes themselves and read what the gateway answers, up to the connection's end.
Every wait has a hang guard; none is a timing assertion.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["RawResponse", "Trickle", "exchange", "head", "parse_responses", "trickle"]

_GUARD = 30.0  # seconds: only catches hangs


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def head(method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    """A request head with `Host` and the given headers."""
    lines = [f"{method} {path} HTTP/1.1", "Host: gateway.test"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_responses(raw: bytes) -> list[RawResponse]:
    """Every response in `raw` (interim 1xx ones included), each with a Content-Length body."""
    responses = []
    while raw:
        top, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, f"an incomplete response head: {raw[:200]!r}"
        status_line, *header_lines = top.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        responses.append(RawResponse(int(status_line.split()[1]), headers, rest[:length]))
        raw = rest[length:]
    return responses


async def exchange(port: int, data: bytes) -> bytes:
    """Send `data` at once and read until the gateway closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        async with asyncio.timeout(_GUARD):
            return await reader.read()
    finally:
        writer.close()


@dataclass
class Trickle:
    """What became of a client sending its bytes one at a time."""

    sent: int = 0  # bytes written before the gateway closed the connection
    total: int = 0
    received: bytes = b""
    closed_after: float = 0.0  # seconds from connecting to the gateway's close

    @property
    def cut_short(self) -> bool:
        return self.sent < self.total


async def trickle(port: int, data: bytes, *, interval: float, start: int = 0) -> Trickle:
    """Send `data[:start]` at once, then the rest a byte every `interval` seconds, until the
    gateway closes the connection (or everything was sent and it answered and closed)."""
    result = Trickle(total=len(data))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    began = time.monotonic()

    async def send() -> None:
        try:
            if start:
                writer.write(data[:start])
                result.sent = start
            for index in range(start, len(data)):
                await asyncio.sleep(interval)
                writer.write(data[index : index + 1])
                await writer.drain()
                result.sent = index + 1
        except ConnectionError:
            return

    sender = asyncio.create_task(send())
    try:
        async with asyncio.timeout(_GUARD):
            while chunk := await reader.read(65536):
                result.received += chunk
    except ConnectionError:
        pass
    finally:
        result.closed_after = time.monotonic() - began
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()
    return result
