"""How long after a client disconnects does the upstream see its connection closed?

    .venv/bin/python -m bench.disconnect_latency [--tries 100]

Starts the fake upstream (tests/support) streaming one chunk every 10 ms, a gateway in front
of it, and a client that reads 5 events and then closes its connection. The figure is the time
from the client's close to the upstream handler observing the peer's close, per try, on the
same event loop clock. Prints p50/p90/p99/max in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

import aiohttp

from gateway.observability import configure_logging
from gateway.server import create_app, start_server
from gateway.settings import GatewaySettings
from tests.support import fake_upstream as fake


async def measure(tries: int) -> list[float]:
    loop = asyncio.get_running_loop()
    samples: list[float] = []
    async with fake.FakeUpstream() as upstream:
        upstream.script("m", fake.sse_stream(fake.openai_chunks(["x"] * 1000), delay=0.01))
        settings = GatewaySettings(
            upstreams={"fake": {"kind": "openai", "base_url": upstream.base_url}},
            routes=[{"model": "m", "targets": [{"upstream": "fake"}]}],
        )
        runner, port = await start_server(create_app(settings), "127.0.0.1", 0)
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        try:
            async with aiohttp.ClientSession() as client:
                for _ in range(tries):
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    async with client.post(url, json=body) as response:
                        for _ in range(5):
                            await response.content.readuntil(b"\n\n")
                        call = upstream.requests[-1]
                        response.close()
                        closed_at = loop.time()
                    await call.wait_closed_by_peer()
                    assert call.close_time is not None
                    samples.append((call.close_time - closed_at) * 1000)
        finally:
            await runner.cleanup()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tries", type=int, default=100)
    configure_logging("warning")
    samples = asyncio.run(measure(parser.parse_args().tries))
    q = statistics.quantiles(samples, n=100)
    print(
        f"client close -> upstream sees close, {len(samples)} tries: "
        f"p50 {q[49]:.3f} ms, p90 {q[89]:.3f} ms, p99 {q[98]:.3f} ms, max {max(samples):.3f} ms"
    )


if __name__ == "__main__":
    main()
