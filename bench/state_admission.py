"""What shared admission through Redis adds per request, beside the in-process store.

    .venv/bin/python -m bench.state_admission [--requests N] [--concurrency C]

Starts its own `redis-server` on a free port (Debian's, on the PATH) and measures
`admit(key)` + `release()` of a key with a requests-per-minute and a streams-in-flight limit
(the `ADMIT` script and the lease's `ZREM`): one request after the other (each `admit` is then
one round trip, carrying the previous request's release), and `C` at a time (the link
pipelines the commands of one event-loop turn). Prints p50 and p99 in microseconds of
`MemoryStore` and `RedisStore`, and the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time

from gateway.state import KeyLimits, MemoryStore, StateStore
from gateway.state.redis_store import RedisStore, redis_client
from tests.support.redis_server import RedisServer

KEY = KeyLimits("bench", max_streams=1_000_000, requests_per_minute=1_000_000_000)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _one_by_one(store: StateStore, requests: int) -> list[float]:
    took = []
    for _ in range(requests):
        started = time.perf_counter()
        lease = await store.admit(KEY)
        lease.release()
        took.append((time.perf_counter() - started) * 1e6)
    return took


async def _concurrent(store: StateStore, requests: int, concurrency: int) -> list[float]:
    took: list[float] = []

    async def one() -> None:
        started = time.perf_counter()
        lease = await store.admit(KEY)
        lease.release()
        took.append((time.perf_counter() - started) * 1e6)

    for _ in range(requests // concurrency):
        await asyncio.gather(*(one() for _ in range(concurrency)))
    return took


async def _measure(url: str, requests: int, concurrency: int) -> None:
    memory = MemoryStore(max_streams=1_000_000)
    redis = RedisStore(redis_client(url, timeout=1.0), max_streams=1_000_000, timeout=1.0)
    print("| store | mode | p50 us | p99 us |\n|---|---|---|---|")
    figures: dict[tuple[str, str], tuple[float, float]] = {}
    for name, store in (("memory", memory), ("redis", redis)):
        await _one_by_one(store, 500)  # warm up: connection, script cache
        for mode, took in (
            ("sequential", await _one_by_one(store, requests)),
            (f"{concurrency} at a time", await _concurrent(store, requests, concurrency)),
        ):
            figures[name, mode] = (_percentile(took, 0.5), _percentile(took, 0.99))
            p50, p99 = figures[name, mode]
            print(f"| {name} | {mode} | {p50:.1f} | {p99:.1f} |")
    await redis.aclose()
    for mode in ("sequential", f"{concurrency} at a time"):
        (m50, m99), (r50, r99) = figures["memory", mode], figures["redis", mode]
        print(f"redis adds ({mode}): p50 {r50 - m50:.1f} us, p99 {r99 - m99:.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not installed")
    server = RedisServer(executable)
    server.start()
    try:
        asyncio.run(_measure(server.url, args.requests, args.concurrency))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
