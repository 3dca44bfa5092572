"""What tracing costs per request: off (the default), off with a client's `traceparent`, on.

    .venv/bin/python bench/tracing_cost.py [--requests N] [--mode off|passed|on|micro]

One process: the gateway app on 127.0.0.1 in front of the fake upstream (a five-event stream),
called by an aiohttp client one request after the other, so each figure is one request's whole
round trip (client, gateway, upstream, on one event loop). `on` exports to a real OTLP/HTTP
receiver on 127.0.0.1 (`tests.support.otlp_receiver`, the exporter's thread at work as in
production). Prints p50 and mean in microseconds. Run it with `PYTHONPATH` on another tree (the
main branch: `off` only, as it has no `tracing`) to compare the same request there.
`micro` times the tracing code a request runs, alone: what tracing off adds (the client's
`traceparent` looked up, the context read per upstream call and per log line) and what a span
per request and per call costs with tracing on (to the exporter's queue).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import timeit
from typing import Any

import aiohttp

from gateway.observability import configure_logging
from gateway.server import create_app, start_server
from gateway.settings import GatewaySettings
from tests.support import fake_upstream as fake

MODEL = "bench"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def _measure(requests: int, mode: str) -> list[float]:
    async with fake.FakeUpstream() as upstream:
        upstream.script(MODEL, fake.sse_stream([*fake.openai_chunks(["a", "b", "c"]), fake.DONE]))
        values: dict[str, Any] = {
            "upstreams": {
                "fake": {"kind": "openai", "base_url": upstream.base_url, "stream_usage": False}
            },
            "routes": [{"model": MODEL, "targets": [{"upstream": "fake"}]}],
            "heartbeat": None,
        }
        receiver = None
        if mode == "on":
            from tests.support.otlp_receiver import OTLPReceiver

            receiver = OTLPReceiver()
            await receiver.start()
            values["tracing"] = {"enabled": True, "endpoint": receiver.endpoint}
        runner, port = await start_server(create_app(GatewaySettings(**values)), "127.0.0.1", 0)
        headers = {"traceparent": TRACEPARENT} if mode == "passed" else {}
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        took = []
        try:
            async with aiohttp.ClientSession() as client:
                for number in range(requests + 200):
                    started = time.perf_counter()
                    async with client.post(url, json=BODY, headers=headers) as response:
                        await response.read()
                    if number >= 200:  # warm-up
                        took.append((time.perf_counter() - started) * 1e6)
                    upstream.forget_calls()
        finally:
            await runner.cleanup()
            if receiver is not None:
                await receiver.close()
        return took


def _per_call(function: Any, number: int = 20_000) -> float:
    """Microseconds per call of `function()`, the best of five runs."""
    return min(timeit.repeat(function, number=number, repeat=5)) / number * 1e6


def _micro() -> None:
    """The tracing code a request runs, timed alone (the figures a whole request drowns)."""
    from multidict import CIMultiDict

    from gateway.apis import OPENAI_CHAT
    from gateway.observability import (
        UPSTREAM_TRACE,
        Metrics,
        RequestRecord,
        add_trace_id,
        client_trace,
    )
    from gateway.routing import CallTemplate
    from gateway.server.app_state import ROUTER
    from gateway.settings import TracingSettings
    from gateway.tracing import RequestTrace, Tracing

    plain = CIMultiDict({"content-type": "application/json", "authorization": "Bearer k"})
    traced = CIMultiDict({**plain, "traceparent": TRACEPARENT, "tracestate": "v=1"})
    print("| tracing off, per request | us |\n|---|---|")
    print(f"| client_trace, no traceparent | {_per_call(lambda: client_trace(plain)):.3f} |")
    print(f"| client_trace, a traceparent | {_per_call(lambda: client_trace(traced)):.3f} |")
    print(f"| UPSTREAM_TRACE.get (each call) | {_per_call(UPSTREAM_TRACE.get):.3f} |")
    print(f"| add_trace_id (each line) | {_per_call(lambda: add_trace_id(None, 'info', {})):.3f} |")

    class _Sink:  # the exporter's end: the span made, batched and handed over, not sent
        def export(self, spans: Any) -> Any:
            from opentelemetry.sdk.trace.export import SpanExportResult

            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 0) -> bool:
            return True

    tracing = Tracing(TracingSettings(enabled=True), exporter=_Sink())  # type: ignore[arg-type]
    app = create_app(GatewaySettings())
    route = app[ROUTER].resolve("mock")
    target = route.targets[0]
    metrics = Metrics()
    template = CallTemplate("/chat/completions", {}, "mock", True, OPENAI_CHAT)

    class _Observer:
        def attempt_started(self, target: Any) -> None: ...

    def request() -> None:
        record = RequestRecord("id", "chat_completions", metrics, model="mock", route="mock")
        record.tokens = {"input": 12, "output": 30}
        trace = RequestTrace(tracing, traced, "POST", "/v1/chat/completions")
        observer = trace.observe(_Observer(), record, template)  # type: ignore[arg-type]
        observer.attempt_started(target)
        record.outcome, record.status = "completed", 200
        trace.finish(record, 200)

    print("| tracing on, per request | us |\n|---|---|")
    print(f"| request span + one call's span, started and ended | {_per_call(request, 2000):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--mode", choices=("off", "passed", "on", "micro"), default="off")
    args = parser.parse_args()
    configure_logging("warning")  # no line per request in the figures
    if args.mode == "micro":
        _micro()
        return
    took = asyncio.run(_measure(args.requests, args.mode))
    print(
        f"{args.mode}: p50 {statistics.median(took):.0f} us, mean {statistics.fmean(took):.0f} us"
        f" ({len(took)} requests)"
    )


if __name__ == "__main__":
    main()
