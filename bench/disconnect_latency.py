"""How long after a client disconnects does the upstream see its connection closed?

    .venv/bin/python -m bench.disconnect_latency [--tries 100]

Starts the fake upstream (tests/support), a gateway in front of it, and a client that goes
away: `--phase streaming` (default) reads 5 events of a stream that sends one every 10 ms and
then closes; `--phase waiting` closes while the upstream has sent headers but no event yet.
The figure is the time from the client's close to the upstream handler observing the peer's
close, per try, on the same event loop clock. Prints p50/p90/p99/max in milliseconds.
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


async def measure(tries: int, phase: str) -> list[float]:
    loop = asyncio.get_running_loop()
    samples: list[float] = []
    async with fake.FakeUpstream() as upstream:
        if phase == "waiting":
            upstream.script("m", fake.stall_before_first_event())
        else:
            upstream.script("m", fake.sse_stream(fake.openai_chunks(["x"] * 1000), delay=0.01))
        settings = GatewaySettings(
            heartbeat=None,
            upstreams={"fake": {"kind": "openai", "base_url": upstream.base_url}},
            routes=[{"model": "m", "targets": [{"upstream": "fake"}]}],
        )
        runner, port = await start_server(create_app(settings), "127.0.0.1", 0)
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        try:
            async with aiohttp.ClientSession() as client:
                for _ in range(tries):
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    if phase == "waiting":
                        request = asyncio.ensure_future(client.post(url, json=body))
                        call = await upstream.next_call()
                        await call.started.wait()
                        request.cancel()
                        closed_at = loop.time()
                        await asyncio.gather(request, return_exceptions=True)
                    else:
                        async with client.post(url, json=body) as response:
                            for _ in range(5):
                                await response.content.readuntil(b"\n\n")
                            call = await upstream.next_call()
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
    parser.add_argument("--phase", choices=["streaming", "waiting"], default="streaming")
    args = parser.parse_args()
    configure_logging("warning")
    samples = asyncio.run(measure(args.tries, args.phase))
    q = statistics.quantiles(samples, n=100)
    print(
        f"{args.phase}: client close -> upstream sees close, {len(samples)} tries: "
        f"p50 {q[49]:.3f} ms, p90 {q[89]:.3f} ms, p99 {q[98]:.3f} ms, max {max(samples):.3f} ms"
    )


if __name__ == "__main__":
    main()
