"""The slow readers of `tests/load`: a process that holds many streams and reads them slowly.

    python -m tests.load.slow_readers --port P --streams N [--rcvbuf 4096]

A process of its own (uvloop when installed, its open-file limit raised): it opens `N`
connections to 127.0.0.1:P (at most 128 being set up at once), each with a small receive
buffer (`--rcvbuf`: the kernel holds little for it, so the proxy holds what is not read), sends
one streaming chat request on each and reads the answer's first bytes (it must be a 200). Then
it reads no more and writes `{"event": "open", "open": n, "errors": k, "error_samples": [...]}`
on stdout.

It then obeys lines on stdin:

- `read B S P`: every stream reads `B` more bytes, `S` bytes a `recv`, pausing `P` seconds
  between two (a reader slower than its upstream: the proxy's buffers stay full and drain
  and fill again all the while), then stops reading again; answers
  `{"event": "read", "streams": n, "errors": k, ...}` once every stream did (a stream that
  ended or failed meanwhile is an error: the streams are longer than what is read);
- `leave`: closes every connection, answers `{"event": "left"}` and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from typing import Any

from bench.eventloop import run
from bench.system import raise_fd_limit

__all__ = ["main", "stream_request"]

_CONNECTING = 128
_CONNECT_TIMEOUT = 30.0
_SAMPLES = 5


def stream_request(model: str) -> bytes:
    body = json.dumps(
        {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _report(event: str, **figures: Any) -> None:
    print(json.dumps({"event": event, **figures}), flush=True)


async def _open(port: int, request: bytes, rcvbuf: int, gate: asyncio.Semaphore) -> socket.socket:
    """A connection that sent `request` and got the start of a 200 (raises otherwise)."""
    loop = asyncio.get_running_loop()
    async with gate:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                await loop.sock_connect(sock, ("127.0.0.1", port))
                await loop.sock_sendall(sock, request)
                first = await loop.sock_recv(sock, 64)
            if not first.startswith(b"HTTP/1.1 200"):
                raise ConnectionError(f"not a 200: {first[:40]!r}")
        except BaseException:
            sock.close()
            raise
        return sock


async def _read(sock: socket.socket, wanted: int, size: int, pause: float) -> None:
    """Read `wanted` bytes, `size` at a time, `pause` seconds apart."""
    loop = asyncio.get_running_loop()
    while wanted > 0:
        data = await loop.sock_recv(sock, min(size, wanted))
        if not data:
            raise ConnectionError("the stream ended before the bytes to read")
        wanted -= len(data)
        await asyncio.sleep(pause)


def _errors(results: list[Any]) -> list[str]:
    return [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]


async def _commands(sockets: list[socket.socket]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        if line[0] == "read":
            wanted, size, pause = int(line[1]), int(line[2]), float(line[3])
            results = await asyncio.gather(
                *(_read(s, wanted, size, pause) for s in sockets), return_exceptions=True
            )
            errors = _errors(results)
            _report("read", streams=len(sockets), errors=len(errors), error_samples=errors[:5])
        elif line[0] == "leave":
            break
    for sock in sockets:
        sock.close()
    _report("left")


async def _main(args: argparse.Namespace) -> None:
    gate = asyncio.Semaphore(_CONNECTING)
    request = stream_request(args.model)
    opened = await asyncio.gather(
        *(_open(args.port, request, args.rcvbuf, gate) for _ in range(args.streams)),
        return_exceptions=True,
    )
    sockets = [s for s in opened if isinstance(s, socket.socket)]
    errors = _errors(opened)
    _report("open", open=len(sockets), errors=len(errors), error_samples=errors[:_SAMPLES])
    await _commands(sockets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.load.slow_readers")
    parser.add_argument("--port", type=int, required=True, help="the proxy, on 127.0.0.1")
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--model", default="m")
    parser.add_argument("--rcvbuf", type=int, default=4096)
    args = parser.parse_args(argv)
    raise_fd_limit()
    run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
