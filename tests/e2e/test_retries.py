"""Retries and failover before the first byte, end to end: fake upstream -> gateway -> client.

For each fault: what the client gets (the whole answer byte-exact, or the right error), the
calls the fake upstream saw and their spacing, and the total time within its bound. The bounds
are hang guards (the limit that should end the wait, plus slack), never speed targets.

Every gateway here retries with short waits (`FAST_RETRY`: 3 calls per target, backoff bound
0.05 s doubling to 0.2 s) unless a test sets its own policy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from gateway.settings import GatewaySettings
from tests.conftest import RunningGateway, StartGateway
from tests.observability.scrape import finished, value
from tests.support import fake_upstream as fake
from tests.support.chain_gateway import Timed, chain, report, route, target
from tests.support.fake_upstream import DONE, FakeUpstream

MESSAGES = [{"role": "user", "content": "hi"}]
SLACK = 1.0  # seconds on top of the limit that should end a wait (scheduling, CI noise)


def answer(model: str) -> list[bytes]:
    return fake.openai_chunks(["Hel", "lo", "!"], model=model)


def complete(model: str) -> bytes:
    return b"".join(answer(model)) + DONE


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


async def post(
    client: aiohttp.ClientSession, gw: RunningGateway, model: str = "m", **fields: Any
) -> tuple[int, dict[str, str], bytes]:
    body = {"model": model, "messages": MESSAGES, "stream": True, **fields}
    async with client.post(f"{gw.url}/v1/chat/completions", json=body) as response:
        return response.status, dict(response.headers), await response.read()


async def primary_backup(
    start_gateway: StartGateway, upstream: FakeUpstream, **overrides: Any
) -> RunningGateway:
    """Route `m`: `primary`, then `backup`, both on the fake upstream."""
    return await start_gateway(
        None,
        heartbeat=overrides.pop("heartbeat", None),
        **chain(upstream, route("m", target("primary"), target("backup")), **overrides),
    )


# --- retries of the same target ----------------------------------------------------------------


async def test_resets_before_headers_are_retried_then_the_answer_is_whole(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(
        "primary",
        fake.sequence(
            fake.reset_before_headers(),
            fake.reset_before_headers(),
            fake.sse_stream(answer("primary")),
        ),
    )
    gw = await primary_backup(start_gateway, upstream)
    with Timed() as timed:
        status, _, body = await post(client, gw)
    calls = upstream.calls_for("primary")
    report("reset before headers x2", f"{status}, whole answer", timed.elapsed, calls)
    assert (status, body) == (200, complete("primary"))
    assert len(calls) == 3
    assert upstream.calls_for("backup") == []
    # Full jitter below 0.05 s, then below 0.1 s (+ the time a call takes).
    assert all(0 <= gap < 0.1 + 0.5 for gap in fake.gaps(calls))
    assert timed.elapsed < 0.3 + SLACK
    await finished(gw)
    reason = {"upstream": "fake", "reason": "connection_reset"}
    assert value(gw, "gateway_upstream_retries_total", **reason) == 2


@pytest.mark.parametrize("code", [500, 502, 503, 529, 408, 409])
async def test_retryable_statuses_are_retried_on_the_same_target(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession, code: int
) -> None:
    upstream.script("primary", fake.sequence(fake.status(code), fake.sse_stream(answer("primary"))))
    gw = await primary_backup(start_gateway, upstream)
    with Timed() as timed:
        status, _, body = await post(client, gw)
    report(f"{code} once", f"{status}, whole answer", timed.elapsed, upstream.calls_for("primary"))
    assert (status, body) == (200, complete("primary"))
    assert len(upstream.calls_for("primary")) == 2
    assert upstream.calls_for("backup") == []


async def test_retry_after_seconds_is_honoured(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    busy = fake.status(503, headers={"Retry-After": "1"})
    upstream.script("primary", fake.sequence(busy, fake.sse_stream(answer("primary"))))
    gw = await primary_backup(start_gateway, upstream)
    with Timed() as timed:
        status, _, body = await post(client, gw)
    calls = upstream.calls_for("primary")
    report("503 Retry-After: 1", f"{status}, whole answer", timed.elapsed, calls)
    assert (status, body) == (200, complete("primary"))
    (gap,) = fake.gaps(calls)
    assert gap >= 1.0
    assert timed.elapsed < 1.0 + SLACK


async def test_retry_after_ms_is_honoured_to_the_millisecond(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    limited = fake.status(429, headers={"retry-after-ms": "300", "Retry-After": "1"})
    upstream.script("primary", fake.sequence(limited, fake.sse_stream(answer("primary"))))
    gw = await primary_backup(start_gateway, upstream)
    with Timed() as timed:
        status, _, body = await post(client, gw)
    calls = upstream.calls_for("primary")
    report("429 retry-after-ms: 300", f"{status}, whole answer", timed.elapsed, calls)
    assert (status, body) == (200, complete("primary"))
    (gap,) = fake.gaps(calls)
    assert 0.3 <= gap < 1.0  # the precise hint, not the rounded-up header


async def test_a_persistent_429_is_a_few_spaced_calls_then_the_429(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("only", fake.status(429, headers={"Retry-After": "1"}))
    gw = await start_gateway(None, heartbeat=None, **chain(upstream, route("m", target("only"))))
    with Timed() as timed:
        status, headers, body = await post(client, gw)
    calls = upstream.calls_for("only")
    report("persistent 429 Retry-After: 1", f"{status}", timed.elapsed, calls)
    assert status == 429
    assert headers["Retry-After"] == "1"
    assert b"upstream_rate_limited" in body
    # Three calls in all, each a second after the previous: never a tight loop.
    assert len(calls) == 3
    assert all(gap >= 1.0 for gap in fake.gaps(calls))
    assert timed.elapsed < 2.0 + SLACK


async def test_a_persistent_503_without_a_hint_is_bounded_by_the_attempts(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("only", fake.status(503))
    retry = {"attempts": 4, "backoff_initial": 0.2, "backoff_max": 0.4}
    gw = await start_gateway(
        None, heartbeat=None, **chain(upstream, route("m", target("only")), retry=retry)
    )
    with Timed() as timed:
        status, _, body = await post(client, gw)
    calls = upstream.calls_for("only")
    report("persistent 503, no hint", f"{status}", timed.elapsed, calls)
    assert status == 502
    assert b"upstream_status_5xx" in body
    assert len(calls) == 4
    # Full jitter below 0.2, 0.4, 0.4 s: at most 1 s of waiting in all.
    assert timed.elapsed < 1.0 + SLACK


async def test_a_hint_beyond_retry_after_max_fails_over_at_once(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("primary", fake.status(429, headers={"Retry-After": "30"}))
    upstream.script("backup", fake.sse_stream(answer("backup")))
    gw = await primary_backup(start_gateway, upstream)
    with Timed() as timed:
        status, _, body = await post(client, gw)
    report(
        "429 Retry-After: 30 (> retry_after_max)",
        f"{status}, backup's answer",
        timed.elapsed,
        upstream.requests,
    )
    assert (status, body) == (200, complete("backup"))
    assert len(upstream.calls_for("primary")) == 1
    assert timed.elapsed < SLACK


async def test_a_hint_beyond_the_remaining_deadline_is_not_waited_for(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("only", fake.status(429, headers={"Retry-After": "5"}))
    gw = await start_gateway(
        None,
        heartbeat=None,
        **chain(upstream, route("m", target("only"), timeouts={"total": 3})),
    )
    with Timed() as timed:
        status, headers, _ = await post(client, gw)
    report("429 Retry-After: 5, total deadline 3 s", f"{status}", timed.elapsed, upstream.requests)
    assert (status, headers["Retry-After"]) == (429, "5")  # the client gets the hint instead
    assert len(upstream.requests) == 1
    assert timed.elapsed < SLACK


# --- failover ----------------------------------------------------------------------------------


async def test_a_target_whose_attempts_are_spent_fails_over(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
) -> None:
    upstream.script("primary", fake.status(500))
    upstream.script("backup", fake.sse_stream(answer("backup")))
    gw = await primary_backup(start_gateway, upstream)
    with Timed() as timed:
        status, _, body = await post(client, gw)
    report("primary 500 every time", f"{status}, backup's answer", timed.elapsed, upstream.requests)
    assert (status, body) == (200, complete("backup"))
    assert [call.model for call in upstream.requests] == ["primary"] * 3 + ["backup"]
    await finished(gw)
    line = next(e for e in logs if e["event"] == "stream_finished")
    assert (line["upstream_model"], line["attempts"], line["failovers"]) == ("backup", 4, 1)
    reason = {"route": "m", "reason": "upstream_status_5xx"}
    assert value(gw, "gateway_upstream_failovers_total", **reason) == 1


async def test_connect_failures_are_retried_then_fail_over(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("backup", fake.sse_stream(answer("backup")))
    gw = await start_gateway(
        None,
        heartbeat=None,
        **chain(upstream, route("m", target("primary", "dead"), target("backup"))),
    )
    with Timed() as timed:
        status, _, body = await post(client, gw)
    report("connection refused", f"{status}, backup's answer", timed.elapsed, upstream.requests)
    assert (status, body) == (200, complete("backup"))
    await finished(gw)
    refused = {"upstream": "dead", "result": "connect_failed"}
    assert value(gw, "gateway_upstream_attempts_total", **refused) == 3
    assert timed.elapsed < 0.3 + SLACK


@pytest.mark.parametrize(
    "silence",
    [fake.stall_before_headers, fake.stall_before_first_event],
    ids=["no-headers", "headers-then-nothing"],
)
async def test_a_first_byte_timeout_fails_over_without_a_retry(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    silence: Any,
) -> None:
    upstream.script("primary", silence())
    upstream.script("backup", fake.sse_stream(answer("backup")))
    gw = await start_gateway(
        None,
        heartbeat=None,
        **chain(
            upstream,
            route("m", target("primary", timeouts={"first_byte": 0.5}), target("backup")),
        ),
    )
    with Timed() as timed:
        status, _, body = await post(client, gw)
    report(
        f"silent primary ({silence.__name__}), first_byte 0.5 s",
        f"{status}, backup's answer",
        timed.elapsed,
        upstream.requests,
    )
    assert (status, body) == (200, complete("backup"))
    assert len(upstream.calls_for("primary")) == 1  # a silent target is not asked again
    await upstream.calls_for("primary")[0].wait_closed_by_peer()
    assert 0.5 <= timed.elapsed < 0.5 + SLACK


async def test_auth_failure_fails_over_without_a_retry(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("primary", fake.status(401))
    upstream.script("backup", fake.sse_stream(answer("backup")))
    gw = await primary_backup(start_gateway, upstream)
    status, _, body = await post(client, gw)
    assert (status, body) == (200, complete("backup"))
    assert [call.model for call in upstream.requests] == ["primary", "backup"]


async def test_a_bad_request_is_neither_retried_nor_failed_over(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    refusal = fake.openai_error("messages: too long", code="invalid_value", param="messages")
    upstream.script("primary", fake.status(400, body=refusal))
    gw = await primary_backup(start_gateway, upstream)
    with Timed() as timed:
        status, _, body = await post(client, gw)
    report("400 invalid_value", f"{status}", timed.elapsed, upstream.requests)
    assert status == 400
    assert b"messages: too long" in body
    assert [call.model for call in upstream.requests] == ["primary"]


async def test_failover_on_moves_a_listed_code_to_the_next_target(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    too_long = fake.openai_error("maximum context length is 8192", code="context_length_exceeded")
    upstream.script("small", fake.status(400, body=too_long))
    upstream.script("large", fake.sse_stream(answer("large")))
    routes = [
        route("m", target("small"), target("large"), failover_on=["context_length_exceeded"]),
        route("plain", target("small"), target("large")),
    ]
    gw = await start_gateway(None, heartbeat=None, **chain(upstream, *routes))
    status, _, body = await post(client, gw, "m")
    assert (status, body) == (200, complete("large"))
    status, _, body = await post(client, gw, "plain")  # the same code, not listed: the 400
    assert status == 400
    assert b"maximum context length is 8192" in body
    assert [call.model for call in upstream.requests] == ["small", "large", "small"]


async def test_propagate_passes_a_listed_code_on_as_it_is(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    policy = fake.openai_error("flagged by the content filter", code="content_policy_violation")
    other = fake.openai_error("unsupported parameter", code="invalid_value")
    upstream.script("policy", fake.status(400, body=policy))
    upstream.script("other", fake.status(400, body=other))
    upstream.script("backup", fake.sse_stream(answer("backup")))
    upstream.script("broken", fake.status(500))
    rules = {"failover_on": ["upstream_bad_request"], "propagate": ["content_policy_violation"]}
    gw = await start_gateway(
        None,
        heartbeat=None,
        **chain(
            upstream,
            route("policy", target("policy"), target("backup"), **rules),
            route("other", target("other"), target("backup"), **rules),
            route("broken", target("broken"), target("backup"), propagate=["upstream_status_5xx"]),
        ),
    )
    status, _, body = await post(client, gw, "policy")
    assert status == 400
    assert b"flagged by the content filter" in body
    assert b"content_policy_violation" in body
    status, _, body = await post(client, gw, "other")  # not listed: fails over as configured
    assert (status, body) == (200, complete("backup"))
    status, _, body = await post(client, gw, "broken")  # a 5xx passed on: no retry either
    assert status == 502
    assert [call.model for call in upstream.requests] == ["policy", "other", "backup", "broken"]


async def test_every_target_failing_gives_the_last_calls_error(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("primary", fake.status(500))
    upstream.script("backup", fake.status(429, headers={"Retry-After": "60"}))
    gw = await primary_backup(start_gateway, upstream)
    with Timed() as timed:
        status, headers, _ = await post(client, gw)
    report("primary 500, backup 429 Retry-After: 60", f"{status}", timed.elapsed, upstream.requests)
    assert (status, headers["Retry-After"]) == (429, "60")
    assert [call.model for call in upstream.requests] == ["primary"] * 3 + ["backup"]


# --- the total deadline and the client ---------------------------------------------------------


async def test_the_total_deadline_bounds_retries_and_backoff(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("primary", fake.status(503, headers={"retry-after-ms": "400"}))
    upstream.script("backup", fake.stall_before_headers())
    retry = {"attempts": 100}
    gw = await start_gateway(
        None,
        heartbeat=None,
        **chain(
            upstream,
            route("m", target("primary"), target("backup"), timeouts={"total": 2}),
            retry=retry,
        ),
    )
    with Timed() as timed:
        status, _, body = await post(client, gw)
    report(
        "503 every 0.4 s, then a silent backup; total 2 s",
        f"{status}",
        timed.elapsed,
        upstream.requests,
    )
    assert status == 504
    assert b"deadline_exceeded" in body
    primary = upstream.calls_for("primary")
    assert 3 <= len(primary) <= 5  # 2 s of 0.4 s waits, then the backup takes what is left
    assert len(upstream.calls_for("backup")) == 1
    assert 2.0 <= timed.elapsed < 2.0 + SLACK


async def test_a_client_leaving_during_a_backoff_ends_the_chain_at_once(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
) -> None:
    upstream.script("primary", fake.status(503, headers={"Retry-After": "5"}))
    gw = await primary_backup(start_gateway, upstream)
    request = asyncio.create_task(post(client, gw))
    await upstream.next_call()  # the first call failed; the gateway now waits 5 s
    await upstream.requests[0].wait_finished()
    with Timed() as timed:
        request.cancel()  # the client closes its connection
        with contextlib.suppress(asyncio.CancelledError):
            await request
        await finished(gw)
    report("client left during a 5 s backoff", "(gone)", timed.elapsed, upstream.requests)
    assert timed.elapsed < SLACK  # the request ended when the client left, not 5 s later
    line = next(e for e in logs if e["event"] == "stream_finished")
    assert (line["outcome"], line["phase"]) == ("client_disconnected", "backoff")
    assert len(upstream.requests) == 1  # and nothing was tried after
    assert upstream.calls_for("backup") == []


async def test_retries_behind_heartbeats_are_invisible_to_the_client(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    # Heartbeats commit the headers while the gateway waits out a hint and then a silent
    # target; the client then gets the backup's answer on the same 200 stream, no error.
    upstream.script(
        "primary",
        fake.sequence(
            fake.status(503, headers={"retry-after-ms": "350"}), fake.stall_before_first_event()
        ),
    )
    upstream.script("backup", fake.sse_stream(answer("backup")))
    gw = await start_gateway(
        None,
        heartbeat=0.1,
        **chain(
            upstream,
            route("m", target("primary", timeouts={"first_byte": 0.4}), target("backup")),
        ),
    )
    status, _, body = await post(client, gw)
    pings, _, events = body.partition(b"data: ")
    assert status == 200
    assert pings.count(b": ping\n\n") >= 3
    assert pings == b": ping\n\n" * pings.count(b": ping\n\n")
    assert b"data: " + events == complete("backup")
    assert [call.model for call in upstream.requests] == ["primary", "primary", "backup"]


# --- both APIs, and stream: false --------------------------------------------------------------


async def test_non_streaming_answers_are_retried_whole(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    # A body cut mid-way reached nobody yet: the request is retried and the client gets one
    # whole answer.
    upstream.script(
        "primary",
        fake.sequence(
            fake.json_cut(40, model="primary"),
            fake.status(502),
            fake.json_completion("Hello!", model="primary"),
        ),
    )
    gw = await primary_backup(start_gateway, upstream)
    body = {"model": "m", "messages": MESSAGES}
    async with client.post(f"{gw.url}/v1/chat/completions", json=body) as response:
        assert response.status == 200
        payload = await response.json()
    assert payload["model"] == "primary"
    assert payload["choices"][0]["message"]["content"] == "Hello!"
    assert len(upstream.calls_for("primary")) == 3


async def test_a_chain_in_front_of_the_mock_fails_over_from_mock_500(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(
        None,
        heartbeat=None,
        upstreams={"mock": {"kind": "mock", "mock": {"chunk_delay": 0.0}}},
        routes=[route("demo", target("mock-500", "mock"), target("mock", "mock"))],
        retry={"backoff_initial": 0.01},
    )
    status, _, body = await post(client, gw, "demo")
    assert status == 200
    assert b'"model":"mock"' in body
    assert body.endswith(DONE)
    await finished(gw)
    failed = {"upstream": "mock", "result": "upstream_status_5xx"}
    assert value(gw, "gateway_upstream_attempts_total", **failed) == 3  # the default attempts


def test_route_error_code_lists_take_codes_only() -> None:
    GatewaySettings(routes=[route("m", target("mock", "mock"), failover_on=["a.b-c_1"])])
    with pytest.raises(ValidationError, match="failover_on"):
        GatewaySettings(routes=[route("m", target("mock", "mock"), failover_on=["no spaces"])])
