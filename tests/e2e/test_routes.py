"""Routes end to end: glob names, chains of targets, per-target limits and concurrency.

A fake upstream stands for every target; each target asks it for its own model name, which is
how the fake picks the target's behaviour and how a test tells which target a call went to.
The answer is relayed as its upstream sent it, so the `model` of the chunks the client gets is
the name of the target that actually answered; the request's log line says the same.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from tests.conftest import RunningGateway, StartGateway
from tests.observability.scrape import finished, value
from tests.support import fake_upstream as fake
from tests.support.chain_gateway import chain
from tests.support.fake_upstream import DONE, FakeUpstream

MESSAGES = [{"role": "user", "content": "hi"}]


def chunks(model: str) -> list[bytes]:
    return fake.openai_chunks(["Hel", "lo"], model=model)


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


def finished_line(logs: list[dict[str, Any]]) -> dict[str, Any]:
    (line,) = [e for e in logs if e["event"] in ("stream_finished", "request_finished")]
    return line


async def post(
    client: aiohttp.ClientSession, gw: RunningGateway, model: str, **fields: Any
) -> tuple[int, dict[str, str], bytes]:
    body = {"model": model, "messages": MESSAGES, "stream": True, **fields}
    async with client.post(f"{gw.url}/v1/chat/completions", json=body) as response:
        return response.status, dict(response.headers), await response.read()


async def test_glob_route_sends_the_clients_name_or_the_targets(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("gpt-4o-mini", fake.sse_stream(chunks("gpt-4o-mini")))
    upstream.script("llama-8b", fake.sse_stream(chunks("llama-8b")))
    gw = await start_gateway(
        None,
        **chain(
            upstream,
            {"model": "gpt-*", "targets": [{"upstream": "fake"}]},
            {"model": "local-*", "targets": [{"upstream": "fake", "model": "llama-8b"}]},
        ),
    )
    status, _, body = await post(client, gw, "gpt-4o-mini")
    assert (status, body) == (200, b"".join(chunks("gpt-4o-mini")) + DONE)
    status, _, body = await post(client, gw, "local-anything")
    assert (status, body) == (200, b"".join(chunks("llama-8b")) + DONE)
    assert [call.model for call in upstream.requests] == ["gpt-4o-mini", "llama-8b"]
    status, _, _ = await post(client, gw, "claude-x")
    assert status == 404
    await finished(gw, 3)
    # The route label is the configured pattern, never the name the client typed.
    completed = {"endpoint": "chat_completions", "route": "gpt-*", "outcome": "completed"}
    assert value(gw, "gateway_requests_total", **completed) == 1


async def test_models_lists_the_exact_names_routed(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(
        None,
        **chain(
            upstream,
            {"model": "fast", "targets": [{"upstream": "fake", "model": "a"}]},
            {"model": "gpt-*", "targets": [{"upstream": "fake"}]},
            {"model": "smart", "targets": [{"upstream": "fake", "model": "b"}]},
        ),
    )
    async with client.get(f"{gw.url}/v1/models") as response:
        listing = await response.json()
    assert listing["object"] == "list"
    assert [model["id"] for model in listing["data"]] == ["fast", "smart"]


async def test_target_first_byte_limit_applies_to_that_target(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("silent", fake.stall_before_first_event())
    gw = await start_gateway(
        None,
        heartbeat=None,
        **chain(
            upstream,
            {
                "model": "m",
                "targets": [
                    {"upstream": "fake", "model": "silent", "timeouts": {"first_byte": 0.3}}
                ],
                "timeouts": {"first_byte": 30},
            },
        ),
    )
    started = time.monotonic()
    status, _, body = await post(client, gw, "m")
    elapsed = time.monotonic() - started
    assert status == 504
    assert b"first_byte_timeout" in body
    assert 0.3 <= elapsed < 0.3 + 2  # the target's 0.3 s, not the route's 30 s


async def test_a_full_target_sends_requests_to_the_next_one_which_reports_its_model(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
) -> None:
    upstream.script("primary", fake.stall_after(1, chunks("primary")))
    upstream.script("backup", fake.sse_stream(chunks("backup")))
    gw = await start_gateway(
        None,
        **chain(
            upstream,
            {
                "model": "m",
                "targets": [
                    {"upstream": "fake", "model": "primary", "max_streams": 1},
                    {"upstream": "fake", "model": "backup"},
                ],
            },
        ),
    )
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    async with client.post(f"{gw.url}/v1/chat/completions", json=body) as holding:
        assert await holding.content.readuntil(b"\n\n") == chunks("primary")[0]
        # The primary's one slot is taken by the stream above: the next request goes on.
        status, _, answer = await post(client, gw, "m")
        assert (status, answer) == (200, b"".join(chunks("backup")) + DONE)
    assert [call.model for call in upstream.requests] == ["primary", "backup"]
    await finished(gw, 2)
    lines = [e for e in logs if e["event"] == "stream_finished"]
    answered = next(line for line in lines if line["outcome"] == "completed")
    assert (answered["upstream"], answered["upstream_model"]) == ("fake", "backup")
    assert answered["failovers"] == 1
    reason = {"route": "m", "reason": "gateway_overloaded"}
    assert value(gw, "gateway_upstream_failovers_total", **reason) == 1


async def test_every_target_full_is_a_503_with_retry_after_and_no_upstream_call(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("only", fake.stall_after(1, chunks("only")))
    gw = await start_gateway(
        None,
        **chain(
            upstream,
            {"model": "m", "targets": [{"upstream": "fake", "model": "only", "max_streams": 1}]},
        ),
    )
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    async with client.post(f"{gw.url}/v1/chat/completions", json=body) as holding:
        await holding.content.readuntil(b"\n\n")
        status, headers, answer = await post(client, gw, "m")
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert b"gateway_overloaded" in answer
    assert len(upstream.requests) == 1
    # The slot is given back when the holding stream's request ends: the next one gets through.
    await finished(gw, 2)
    upstream.script("only", fake.sse_stream(chunks("only")))
    status, _, answer = await post(client, gw, "m")
    assert (status, answer) == (200, b"".join(chunks("only")) + DONE)
