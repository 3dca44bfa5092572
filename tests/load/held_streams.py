"""The load generator of `tests/load`: a process that holds many streams open through a proxy.

    python -m tests.load.held_streams --port P --streams N --chunks C --delay D

A process of its own (uvloop when installed, its open-file limit raised to the hard limit):
10,000 client sockets do not fit next to the test runner's own, and its event loop should not
compete with the test's. It opens `N` connections to 127.0.0.1:P (at most 128 being set up at
once), starts one bench stream (`bench.protocol`: `C` chunks, `D` seconds apart) on each as
soon as it is connected, and writes two JSON lines on stdout:

- `{"event": "open", ...}` once every stream delivered its first event or failed (no
  connection, not 200, an error, no first event within `--first-event-timeout` seconds):
  how many are open now, and samples of the failures;
- `{"event": "done", ...}` once every open stream ended (or `--end-timeout` seconds passed):
  how many completed - 200, every chunk, no `event: error`, `data: [DONE]` and the end of the
  body, exactly `bench.loadgen`'s check - and samples of the errors.

Then it closes what is left and exits. What ends the streams is up to the caller (the mock
upstream's `GET /_bench/finish`, or their own `C * D` seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.eventloop import run
from bench.loadgen import Address, Connection, StreamResult
from bench.protocol import StreamShape
from bench.system import raise_fd_limit

__all__ = ["main"]

_CONNECTING = 128  # connections being set up at once (the gateway's backlog is 1024)
_CONNECT_TIMEOUT = 30.0
_SAMPLES = 5  # error messages reported, at most


@dataclass(slots=True)
class _Held:
    """One stream: its connection (None: it never connected) and how it went so far."""

    connection: Connection | None
    result: asyncio.Future[StreamResult]
    first_event: bool


def _failed(message: str) -> asyncio.Future[StreamResult]:
    future: asyncio.Future[StreamResult] = asyncio.get_running_loop().create_future()
    future.set_result(StreamResult(error=message))
    return future


async def _open(
    address: Address, shape: StreamShape, gate: asyncio.Semaphore, first_timeout: float
) -> _Held:
    """Connect, start the stream and wait for its first event (or its end, or the timeout)."""
    loop = asyncio.get_running_loop()
    async with gate:
        try:
            connection = await asyncio.wait_for(Connection.open(address), _CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            return _Held(None, _failed(f"connect failed: {type(exc).__name__}: {exc}"), False)
        first: asyncio.Future[None] = loop.create_future()

        def seen() -> None:
            if not first.done():
                first.set_result(None)

        result = connection.start(shape, on_first_event=seen)
        either: list[asyncio.Future[Any]] = [first, result]
        await asyncio.wait(either, timeout=first_timeout, return_when=asyncio.FIRST_COMPLETED)
        return _Held(connection, result, first.done())


def _report(event: str, **figures: Any) -> None:
    print(json.dumps({"event": event, **figures}), flush=True)


def _open_errors(held: list[_Held], first_timeout: float) -> list[str]:
    errors = []
    for each in held:
        if each.result.done():
            outcome = each.result.result()
            errors.append(outcome.error or f"ended before the hold, {outcome.events} events")
        elif not each.first_event:
            errors.append(f"no first event within {first_timeout:g} s")
    return errors


async def _hold(args: argparse.Namespace) -> None:
    address = Address("127.0.0.1", args.port)
    gate = asyncio.Semaphore(_CONNECTING)
    shapes = [StreamShape(args.chunks, args.delay, rid) for rid in range(1, args.streams + 1)]
    started = time.monotonic()
    first_timeout = args.first_event_timeout
    held = await asyncio.gather(*(_open(address, s, gate, first_timeout) for s in shapes))
    errors = _open_errors(held, first_timeout)
    _report(
        "open",
        streams=len(held),
        open=sum(1 for h in held if h.first_event and not h.result.done()),
        errors=len(errors),
        error_samples=errors[:_SAMPLES],
        ramp_s=round(time.monotonic() - started, 2),
    )
    running = [h.result for h in held if not h.result.done()]
    if running:
        await asyncio.wait(running, timeout=args.end_timeout)
    ends = [
        h.result.result().error if h.result.done() else f"not ended within {args.end_timeout:g} s"
        for h in held
    ]
    failures = [error for error in ends if error is not None]
    _report(
        "done",
        completed=len(ends) - len(failures),
        errors=len(failures),
        error_samples=failures[:_SAMPLES],
    )
    for each in held:
        if each.connection is not None:
            each.connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.load.held_streams")
    parser.add_argument("--port", type=int, required=True, help="the proxy, on 127.0.0.1")
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--chunks", type=int, required=True, help="data events per stream")
    parser.add_argument("--delay", type=float, required=True, help="seconds between chunks")
    parser.add_argument("--first-event-timeout", type=float, default=60.0)
    parser.add_argument("--end-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    raise_fd_limit()
    run(_hold(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
