"""What a resumable stream costs per event, beside a plain one.

    .venv/bin/python -m bench.resumable_stream [--events N] [--runs R] [--redis]

One gateway app in this process (heartbeats off), one fake upstream streaming `N` chat chunks
of ~180 bytes as fast as it can (8 per write), one aiohttp client reading the stream whole:
`R` runs each of a plain stream, a resumable one (`x-gateway-resumable: true`) with the
in-process store, and with `--redis` one with a `RedisStore` on a `redis-server` of its own.
Prints the median seconds per stream and microseconds per event, and the difference per event
over the plain stream. Client, gateway and upstream share one core: the figures are an upper
bound of the gateway's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import time

import aiohttp

from gateway.server import create_app, start_server
from tests.conftest import gateway_settings
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream
from tests.support.openai_wire import openai_chunks
from tests.support.redis_server import RedisServer

CHAT = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


async def _one(session: aiohttp.ClientSession, url: str, resumable: bool) -> float:
    headers = {"x-gateway-resumable": "true"} if resumable else {}
    started = time.perf_counter()
    async with session.post(url, json=CHAT, headers=headers) as reply:
        async for _ in reply.content.iter_any():
            pass
    return time.perf_counter() - started


async def _measure(events: int, runs: int, state: dict[str, str] | None) -> dict[str, float]:
    chunks = openai_chunks([f"word{i} " for i in range(events)])
    batched = [b"".join(chunks[i : i + 8]) for i in range(0, len(chunks), 8)]
    async with FakeUpstream() as upstream:
        upstream.script("m", fake.sse_stream(batched))
        overrides: dict[str, object] = {"heartbeat": None}
        if state is not None:
            overrides["state"] = state
        settings = gateway_settings(upstream, ("m",), **overrides)
        runner, port = await start_server(create_app(settings), "127.0.0.1", 0)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        figures = {}
        try:
            async with aiohttp.ClientSession() as session:
                for name, resumable in (("plain", False), ("resumable", True)):
                    await _one(session, url, resumable)  # warm
                    figures[name] = statistics.median(
                        [await _one(session, url, resumable) for _ in range(runs)]
                    )
        finally:
            await runner.cleanup()
    return figures


def _report(label: str, figures: dict[str, float], events: int) -> None:
    plain, kept = figures["plain"], figures["resumable"]
    print(
        f"{label}: plain {plain * 1e6 / events:.2f} us/event, resumable "
        f"{kept * 1e6 / events:.2f} us/event: +{(kept - plain) * 1e6 / events:.2f} us/event"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--redis", action="store_true")
    args = parser.parse_args()
    _report("memory", await _measure(args.events, args.runs, None), args.events)
    if args.redis:
        executable = shutil.which("redis-server")
        if executable is None:
            raise SystemExit("redis-server is not on the PATH")
        redis = RedisServer(executable)
        redis.start()
        try:
            state = {"redis_url": redis.url}
            _report("redis", await _measure(args.events, args.runs, state), args.events)
        finally:
            redis.stop()


if __name__ == "__main__":
    asyncio.run(main())
