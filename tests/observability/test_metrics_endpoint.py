"""`GET /metrics`: the exposition, its own listener, the optional key, and bounded cardinality."""

from __future__ import annotations

import asyncio
import random
import string

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway import __version__
from gateway.server import create_metrics_app, start_server
from tests.conftest import StartGateway
from tests.observability.scrape import finished, parse
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream

BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
METRIC_KEY = "gw-metrics-key-5b1d"
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"

#: Every family the README documents; the exposition must hold each of them.
FAMILIES = {
    "gateway_requests": "counter",
    "gateway_active_streams": "gauge",
    "gateway_errors": "counter",
    "gateway_time_to_first_byte_seconds": "histogram",
    "gateway_stream_duration_seconds": "histogram",
    "gateway_event_gap_seconds": "histogram",
    "gateway_relayed_events": "counter",
    "gateway_relayed_bytes": "counter",
    "gateway_upstream_attempts": "counter",
    "gateway_upstream_retries": "counter",
    "gateway_upstream_failovers": "counter",
    "gateway_client_disconnects": "counter",
    "gateway_tokens": "counter",
    "gateway_build_info": "gauge",
}


async def scrape(client: aiohttp.ClientSession, url: str, **headers: str) -> tuple[int, str]:
    async with client.get(f"{url}/metrics", headers=headers) as response:
        return response.status, await response.text()


async def test_metrics_exposition_has_every_documented_family(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("m", fake.sse_stream(delay=0.01))
    gw = await start_gateway(upstream, ("m",))
    async with client.post(f"{gw.url}/v1/chat/completions", json=BODY) as r:
        await r.read()
    await finished(gw)
    async with client.get(f"{gw.url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    async with client.get(f"{gw.url}/metrics", headers={"Accept": OPENMETRICS}) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await response.text()).endswith("# EOF\n")
    async with client.get(f"{gw.url}/metrics") as response:
        text = await response.text()
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert {name: families.get(name) for name in FAMILIES} == FAMILIES
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in parse(text)}
    key = (
        "gateway_requests_total",
        (("endpoint", "chat_completions"), ("outcome", "completed"), ("route", "m")),
    )
    assert samples[key] == 1
    assert samples[("gateway_relayed_events_total", (("route", "m"),))] == 5
    # 5 events in 5 upstream writes 10 ms apart: 4 gaps between relayed reads.
    assert samples[("gateway_event_gap_seconds_count", (("route", "m"),))] == 4
    build = [s for s in parse(text) if s.name == "gateway_build_info"]
    assert [(s.labels["version"], s.value) for s in build] == [(__version__, 1.0)]


async def test_active_streams_gauge_counts_streams_in_progress(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("m", fake.stall_after(1))
    gw = await start_gateway(upstream, ("m",))
    async with client.post(f"{gw.url}/v1/chat/completions", json=BODY) as r:
        await r.content.readuntil(b"\n\n")
        _, text = await scrape(client, gw.url)
        assert [s.value for s in parse(text) if s.name == "gateway_active_streams"] == [1.0]
    await upstream.requests[0].wait_closed_by_peer()
    await finished(gw)
    _, text = await scrape(client, gw.url)
    assert [s.value for s in parse(text) if s.name == "gateway_active_streams"] == [0.0]


async def test_metrics_can_require_a_gateway_key(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(
        None, metrics={"require_key": True}, auth={"keys": [METRIC_KEY, "another-key"]}
    )
    status, text = await scrape(client, gw.url)
    assert status == 401
    assert METRIC_KEY not in text
    assert "gateway_requests" not in text
    assert (await scrape(client, gw.url, Authorization="Bearer wrong"))[0] == 401
    assert (await scrape(client, gw.url, Authorization=f"Basic {METRIC_KEY}"))[0] == 401
    assert (await scrape(client, gw.url, Authorization=f"Bearer {METRIC_KEY}"))[0] == 200
    assert (await scrape(client, gw.url, **{"x-api-key": "another-key"}))[0] == 200
    # Health stays open: orchestrators probe without keys.
    async with client.get(f"{gw.url}/healthz") as response:
        assert response.status == 200


async def test_metrics_on_their_own_listener_are_not_on_the_main_one(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("m", fake.sse_stream())
    gw = await start_gateway(upstream, ("m",), metrics={"listen": {"port": 0}})
    runner, port = await start_server(create_metrics_app(gw.app), "127.0.0.1", 0)
    try:
        async with client.post(f"{gw.url}/v1/chat/completions", json=BODY) as r:
            await r.read()
        await finished(gw)
        assert (await scrape(client, gw.url))[0] == 404
        status, text = await scrape(client, f"http://127.0.0.1:{port}")
        assert status == 200
        assert any(s.name == "gateway_requests_total" and s.value == 1 for s in parse(text))
        async with client.get(f"http://127.0.0.1:{port}/v1/models") as response:
            assert response.status == 404  # the metrics listener serves nothing else
    finally:
        await runner.cleanup()


async def test_metrics_can_be_disabled(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(None, metrics={"enabled": False})
    assert (await scrape(client, gw.url))[0] == 404


def _junk(rng: random.Random, *, header_safe: bool = False) -> str:
    alphabet = string.ascii_letters + string.digits + "-_./:@ {}\"'"
    if not header_safe:
        alphabet += "\n\x1b\u00e9\u202e"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))


@pytest.mark.timeout(120)
async def test_random_models_keys_and_paths_never_become_label_values(
    start_gateway: StartGateway, upstream: FakeUpstream
) -> None:
    """10,000 requests with random model names, keys and paths: the number of series stays
    under a fixed bound, and none of the random values appears in the exposition."""
    upstream.script("m", fake.sse_stream())
    gw = await start_gateway(upstream, ("m",), heartbeat=None)
    rng = random.Random(20261124)
    sent: set[str] = set()
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            model, key, path = _junk(rng), _junk(rng, header_safe=True), _junk(rng)
            sent.update((model, key, path))
            headers = {"Authorization": f"Bearer {key}", "x-user-id": key}
            # Some routed traffic too, so that real series exist.
            body = BODY if i % 10 == 0 else {**BODY, "model": model, "user": key}
            url = f"{gw.url}/v1/chat/completions"
            if i % 3 == 0:
                url = f"{gw.url}/{path.replace(' ', '%20').replace(chr(10), '')}"
            async with session.post(url, json=body, headers=headers) as response:
                await response.read()

        for start in range(0, 10_000, 500):
            await asyncio.gather(*(one(i) for i in range(start, start + 500)))
        _, text = await scrape(session, gw.url)
    samples = parse(text)
    label_values = {value for s in samples for value in s.labels.values()}
    assert not (label_values & {v for v in sent if len(v) > 3})
    assert {s.labels.get("route") for s in samples if "route" in s.labels} <= {"m", "none"}
    # 14 families; the histograms dominate: 3 x (15 buckets + sum + count) per route.
    print(f"series after 10,000 hostile requests: {len(samples)}")
    assert len(samples) < 250, len(samples)
