"""Circuit breaking per target, end to end.

A primary that keeps failing is skipped (requests go straight to the backup) until, after a
cooldown, one request probes it; the probe's success brings traffic back. The flapping-primary
test drives a steady sequence of requests through the `openai` SDK while the primary is down,
then up, and checks what every request got and which target it reached, when.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import openai
import pytest
from structlog.testing import capture_logs

from tests.conftest import RunningGateway, StartGateway
from tests.observability.scrape import finished, value
from tests.support import fake_upstream as fake
from tests.support.chain_gateway import chain, route, target
from tests.support.fake_upstream import DONE, FakeUpstream

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
WORDS = ["All ", "is ", "well."]
COOLDOWN = 0.5
PACE = 0.05  # seconds between the flapping test's requests


def answer(model: str) -> list[bytes]:
    return fake.openai_chunks(WORDS, model=model)


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


@pytest.fixture
async def gateway(upstream: FakeUpstream, start_gateway: StartGateway) -> RunningGateway:
    upstream.script("backup", fake.sse_stream(answer("backup")))
    return await start_gateway(
        None,
        heartbeat=None,
        circuit={"failures": 3, "cooldown": COOLDOWN},
        **chain(upstream, route("m", target("primary"), target("backup"))),
    )


@pytest.fixture
async def sdk(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key="unused", max_retries=0
    ) as client:
        yield client


async def ask(sdk: openai.AsyncOpenAI) -> tuple[str, str]:
    """(the text, the model that answered) of one streamed request."""
    stream = await sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    text, models = [], set()
    async for chunk in stream:
        models.add(chunk.model)
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
    (model,) = models
    return "".join(text), model


async def run_for(sdk: openai.AsyncOpenAI, seconds: float) -> list[tuple[float, str]]:
    """Ask every `PACE` seconds for `seconds`; (when it was asked, who answered) for each."""
    answered = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        asked = asyncio.get_running_loop().time()
        text, model = await ask(sdk)
        assert text == "".join(WORDS)  # every request gets the whole answer
        answered.append((asked, model))
        await asyncio.sleep(PACE)
    return answered


async def test_a_flapping_primary_is_skipped_while_down_and_used_again_once_up(
    upstream: FakeUpstream,
    gateway: RunningGateway,
    sdk: openai.AsyncOpenAI,
    logs: list[dict[str, Any]],
) -> None:
    upstream.script("primary", fake.status(503))
    down = await run_for(sdk, 1.6)
    calls_while_down = upstream.calls_for("primary")
    # The first request tried the primary 3 times (its attempts), which opened the circuit;
    # after that, only one probe per cooldown reached it.
    assert {model for _, model in down} == {"backup"}
    probes = calls_while_down[3:]
    assert 1 <= len(probes) <= 1.6 / COOLDOWN
    assert fake.gaps(calls_while_down[2:]) == pytest.approx([COOLDOWN] * len(probes), abs=0.25)
    assert all(gap >= COOLDOWN for gap in fake.gaps(calls_while_down[2:]))
    assert value(gateway, "gateway_circuit_state", target="fake/primary") in (1, 2)

    upstream.script("primary", fake.sse_stream(answer("primary")))
    recovered = asyncio.get_running_loop().time()
    up = await run_for(sdk, 1.2)
    first = next(index for index, (_, model) in enumerate(up) if model == "primary")
    # Traffic is back on the primary within one cooldown of its recovery, and stays there.
    assert up[first][0] - recovered < COOLDOWN + 0.5
    assert {model for _, model in up[first:]} == {"primary"}
    assert value(gateway, "gateway_circuit_state", target="fake/primary") == 0
    print(
        f"\nFAULT 'primary down 1.6 s, then up': {len(down)} + {len(up)} requests, all whole "
        f"answers; {len(probes)} probe(s) while down; back on the primary "
        f"{up[first][0] - recovered:.3f} s after it recovered"
    )
    events = [e["event"] for e in logs if e["event"].startswith("circuit_")]
    assert events[0] == "circuit_opened"
    assert events[-1] == "circuit_closed"
    assert "circuit_half_open" in events


async def test_an_open_circuit_sends_requests_straight_to_the_next_target(
    upstream: FakeUpstream,
    gateway: RunningGateway,
    client: aiohttp.ClientSession,
) -> None:
    upstream.script("primary", fake.status(500))
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    for _ in range(3):
        async with client.post(f"{gateway.url}/v1/chat/completions", json=body) as response:
            assert await response.read() == b"".join(answer("backup")) + DONE
    # 3 calls opened it during the first request; the next two did not touch the primary.
    assert len(upstream.calls_for("primary")) == 3
    await finished(gateway, 3)
    skipped = {"route": "m", "reason": "circuit_open"}
    assert value(gateway, "gateway_upstream_failovers_total", **skipped) == 2


async def test_failures_after_the_first_byte_count_against_the_target(
    upstream: FakeUpstream,
    gateway: RunningGateway,
    client: aiohttp.ClientSession,
) -> None:
    # A primary that cuts every answer mid-way: the clients get the error event (nothing to
    # continue with here), and after three such cuts the primary is skipped.
    upstream.script("primary", fake.cut_fin(2, chunked=True, chunks=answer("primary")))
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    for _ in range(3):
        async with client.post(f"{gateway.url}/v1/chat/completions", json=body) as response:
            assert b"event: error" in await response.read()
    async with client.post(f"{gateway.url}/v1/chat/completions", json=body) as response:
        assert await response.read() == b"".join(answer("backup")) + DONE
    assert len(upstream.calls_for("primary")) == 3


async def test_a_route_whose_every_target_is_open_still_calls_them(
    upstream: FakeUpstream, start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    # A breaker decides where requests go; it never turns one away by itself: with one
    # target, the client keeps getting the upstream's own answer, and its recovery is seen.
    upstream.script("only", fake.status(500))
    gw = await start_gateway(
        None,
        heartbeat=None,
        circuit={"failures": 2, "cooldown": 60},
        **chain(upstream, route("m", target("only")), retry={"attempts": 1}),
    )
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    for _ in range(4):
        async with client.post(f"{gw.url}/v1/chat/completions", json=body) as response:
            assert response.status == 502
    assert len(upstream.calls_for("only")) == 4
    assert value(gw, "gateway_circuit_state", target="fake/only") == 2
    upstream.script("only", fake.sse_stream(answer("only")))
    async with client.post(f"{gw.url}/v1/chat/completions", json=body) as response:
        assert await response.read() == b"".join(answer("only")) + DONE
    assert value(gw, "gateway_circuit_state", target="fake/only") == 0


async def test_routes_naming_the_same_backend_share_its_circuit(
    upstream: FakeUpstream, start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    upstream.script("shared", fake.status(503))
    upstream.script("backup", fake.sse_stream(answer("backup")))
    gw = await start_gateway(
        None,
        heartbeat=None,
        circuit={"failures": 3, "cooldown": 60},
        **chain(
            upstream,
            route("a", target("shared"), target("backup")),
            route("b", target("shared"), target("backup")),
        ),
    )
    for model in ("a", "b"):
        body = {"model": model, "messages": MESSAGES, "stream": True}
        async with client.post(f"{gw.url}/v1/chat/completions", json=body) as response:
            assert await response.read() == b"".join(answer("backup")) + DONE
    assert len(upstream.calls_for("shared")) == 3  # route b never called it
