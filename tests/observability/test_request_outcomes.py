"""Every path of the foundation's fault list is recorded exactly once, in metrics and log alike.

Each case drives one request through a real gateway in front of the fake upstream, then checks
that `gateway_requests_total` grew by exactly one with the expected outcome, that the error
counter says the same category and code, that the one finished log line agrees with both, and
that gauges and histograms are back where they belong (no active stream left, one duration).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from gateway.errors import ServerShutdown
from gateway.server.app_state import SERVER_CONTEXT
from tests.conftest import RunningGateway, StartGateway
from tests.observability.scrape import finished, total, value
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
FINISHED = ("request_finished", "stream_finished")


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


@dataclass(frozen=True)
class Case:
    behaviour: Any
    outcome: str
    code: str | None = None  # None: no error
    stream: bool = True
    headers: tuple[tuple[str, str], ...] = ()
    attempt: str = "ok"  # how the upstream call's opening phase is counted
    events: int | None = None  # upstream events relayed, where the case fixes it


def _usage_chunks() -> list[bytes]:
    chunks = fake.openai_chunks(["Hel", "lo"], finish_reason="stop")
    usage = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
    final = {"id": "x", "object": "chat.completion.chunk", "choices": [], "usage": usage}
    return [*chunks, b"data: " + json.dumps(final).encode() + b"\n\n"]


IDLE = (("x-gateway-idle-timeout", "0.2"),)
FIRST_BYTE = (("x-gateway-first-byte-timeout", "0.2"),)
CASES = {
    # 3 text chunks, the finish chunk, [DONE]
    "completed": Case(fake.sse_stream(), "completed", events=5),
    # ...the usage chunk answers the include_usage the gateway asked for: not relayed
    "completed-with-usage": Case(fake.sse_stream(_usage_chunks()), "completed", events=4),
    # [DONE] added by the gateway is not an upstream event
    "no-done-added": Case(fake.end_clean_without_done(finish=True), "completed", events=4),
    "malformed-event-skipped": Case(fake.invalid_json_event(), "completed", events=5),
    "truncated-clean-eof": Case(
        fake.end_clean_without_done(finish=False), "stream_interrupted", "upstream_truncated"
    ),
    "cut-fin-mid-event": Case(
        fake.cut_fin(2, chunked=True, half=b"data: {"), "stream_interrupted", "upstream_truncated"
    ),
    "idle-timeout": Case(fake.stall_after(2), "timeout", "idle_timeout", headers=IDLE),
    "first-byte-timeout-before-headers": Case(
        fake.stall_before_headers(),
        "timeout",
        "first_byte_timeout",
        headers=FIRST_BYTE,
        attempt="first_byte_timeout",
    ),
    "first-byte-timeout-after-headers": Case(
        fake.stall_before_first_event(), "timeout", "first_byte_timeout", headers=FIRST_BYTE
    ),
    "total-deadline": Case(
        fake.stall_after(1),
        "timeout",
        "deadline_exceeded",
        headers=(("x-gateway-total-timeout", "0.3"),),
    ),
    "upstream-429": Case(
        fake.status(429), "rate_limit", "upstream_rate_limited", attempt="upstream_rate_limited"
    ),
    "upstream-500": Case(
        fake.status(500), "api_error", "upstream_status_5xx", attempt="upstream_status_5xx"
    ),
    "upstream-401": Case(
        fake.status(401), "api_error", "upstream_auth_failed", attempt="upstream_auth_failed"
    ),
    "upstream-400": Case(
        fake.status(400), "api_error", "upstream_bad_request", attempt="upstream_bad_request"
    ),
    "upstream-html-to-stream": Case(
        fake.html(200),
        "stream_interrupted",
        "upstream_protocol_error",
        attempt="upstream_protocol_error",
    ),
    "upstream-error-event": Case(
        fake.sse_stream(
            [
                fake.openai_chunks(["a"], finish_reason=None)[0],
                b'data: {"error":{"message":"x"}}\n\n',
            ],
            done=False,
        ),
        "api_error",
        "upstream_error_event",
    ),
    "json-completed": Case(fake.json_completion(), "completed", stream=False),
    "json-cut": Case(fake.json_cut(20), "stream_interrupted", "upstream_truncated", stream=False),
    "json-first-byte-timeout": Case(
        fake.stall_before_headers(),
        "timeout",
        "first_byte_timeout",
        stream=False,
        headers=FIRST_BYTE,
        attempt="first_byte_timeout",
    ),
}


def finished_lines(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in logs if line["event"] in FINISHED]


def assert_recorded_once(
    gw: RunningGateway,
    logs: list[dict[str, Any]],
    outcome: str,
    code: str | None,
    route: str,
    endpoint: str = "chat_completions",
) -> dict[str, Any]:
    """One request, one outcome, one log line - all saying the same thing. Returns the line."""
    assert total(gw, "gateway_requests_total") == 1
    assert value(gw, "gateway_requests_total", endpoint=endpoint, route=route, outcome=outcome) == 1
    if code is None:
        assert total(gw, "gateway_errors_total") == 0
    else:
        category = outcome if outcome != "client_disconnected" else "context_canceled"
        assert total(gw, "gateway_errors_total") == 1
        assert value(gw, "gateway_errors_total", category=category, code=code) == 1
    assert total(gw, "gateway_active_streams") == 0
    assert value(gw, "gateway_stream_duration_seconds_count", route=route) == 1
    [line] = finished_lines(logs)
    assert (line["outcome"], line["code"], line["route"], line["endpoint"]) == (
        outcome,
        code,
        None if route == "none" else route,
        endpoint,
    )
    assert not [x for x in logs if x["log_level"] in ("error", "critical") or "exception" in x]
    return line


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_each_fault_path_is_recorded_once_with_its_outcome(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
    case: Case,
) -> None:
    upstream.script("m", case.behaviour)
    gw = await start_gateway(upstream, ("m",), heartbeat=None)
    async with client.post(
        f"{gw.url}/v1/chat/completions",
        json={**BODY, "stream": case.stream},
        headers=dict(case.headers),
    ) as response:
        body = await response.read()
    await finished(gw)
    line = assert_recorded_once(gw, logs, case.outcome, case.code, "m")
    assert value(gw, "gateway_upstream_attempts_total", upstream="fake", result=case.attempt) == 1
    assert total(gw, "gateway_upstream_attempts_total") == 1
    # Bytes and events: what the client received, as the record counted it.
    assert value(gw, "gateway_relayed_bytes_total", route="m") == len(body) == line["bytes"]
    assert value(gw, "gateway_relayed_events_total", route="m") == line["events"]
    if case.events is not None:
        assert line["events"] == case.events
    relayed_any = line["ttfb_ms"] is not None
    assert value(gw, "gateway_time_to_first_byte_seconds_count", route="m") == relayed_any


async def test_tokens_from_the_upstreams_usage_are_counted(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("m", fake.sse_stream(_usage_chunks()))
    gw = await start_gateway(upstream, ("m",))
    async with client.post(f"{gw.url}/v1/chat/completions", json={**BODY, "stream": True}) as r:
        await r.read()
    await finished(gw)
    assert value(gw, "gateway_tokens_total", route="m", upstream="fake", kind="input") == 11
    assert value(gw, "gateway_tokens_total", route="m", upstream="fake", kind="output") == 2


async def test_tokens_of_a_json_completion_are_counted(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("m", fake.json_completion())
    gw = await start_gateway(upstream, ("m",))
    async with client.post(f"{gw.url}/v1/chat/completions", json=BODY) as r:
        usage = (await r.json())["usage"]
    await finished(gw)
    assert (
        value(gw, "gateway_tokens_total", route="m", upstream="fake", kind="input")
        == usage["prompt_tokens"]
    )
    assert (
        value(gw, "gateway_tokens_total", route="m", upstream="fake", kind="output")
        == usage["completion_tokens"]
    )


async def test_partial_usage_is_counted_when_the_client_leaves(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
) -> None:
    """Some upstreams (vLLM's continuous usage stats) report usage on every chunk: a client
    that leaves mid-answer still has the tokens it was sent counted."""
    chunks = []
    for n, text in enumerate(["a", "b", "c"], start=1):
        chunk = {
            "id": "x",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
            "usage": {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n},
        }
        chunks.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    upstream.script("m", fake.stall_after(3, chunks))
    gw = await start_gateway(upstream, ("m",))
    async with client.post(f"{gw.url}/v1/chat/completions", json={**BODY, "stream": True}) as r:
        for _ in range(3):
            await r.content.readuntil(b"\n\n")
    await upstream.requests[0].wait_closed_by_peer()
    await finished(gw)
    assert_recorded_once(gw, logs, "client_disconnected", "client_disconnected", "m")
    assert value(gw, "gateway_client_disconnects_total", phase="streaming") == 1
    assert value(gw, "gateway_tokens_total", route="m", upstream="fake", kind="input") == 7
    assert value(gw, "gateway_tokens_total", route="m", upstream="fake", kind="output") == 3
    assert finished_lines(logs)[0]["tokens"] == {"input": 7, "output": 3}


@pytest.mark.parametrize(
    ("behaviour", "stream", "phase"),
    [
        (fake.stall_before_headers(), True, "waiting_first_byte"),
        (fake.stall_before_headers(), False, "waiting_first_byte"),
        (fake.stall_after(2), True, "streaming"),
    ],
    ids=["before-headers-stream", "before-headers-json", "mid-stream"],
)
async def test_client_disconnect_is_counted_by_phase(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
    behaviour: Any,
    stream: bool,
    phase: str,
) -> None:
    upstream.script("m", behaviour)
    gw = await start_gateway(upstream, ("m",), heartbeat=None)
    request = asyncio.ensure_future(
        client.post(f"{gw.url}/v1/chat/completions", json={**BODY, "stream": stream})
    )
    call = await upstream.next_call()
    if phase == "streaming":
        response = await request
        await response.content.readuntil(b"\n\n")
        response.close()
    else:
        await call.started.wait()
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request
    await call.wait_closed_by_peer()
    await finished(gw)
    assert_recorded_once(gw, logs, "client_disconnected", "client_disconnected", "m")
    assert value(gw, "gateway_client_disconnects_total", phase=phase) == 1
    assert total(gw, "gateway_client_disconnects_total") == 1
    attempt = "ok" if phase == "streaming" else "client_disconnected"
    assert value(gw, "gateway_upstream_attempts_total", upstream="fake", result=attempt) == 1


async def test_server_shutdown_mid_stream_is_recorded_once(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
) -> None:
    upstream.script("m", fake.stall_after(2))
    gw = await start_gateway(upstream, ("m",))
    async with client.post(f"{gw.url}/v1/chat/completions", json={**BODY, "stream": True}) as r:
        await r.content.readuntil(b"\n\n")
        assert total(gw, "gateway_active_streams") == 1
        gw.app[SERVER_CONTEXT].cancel(ServerShutdown())
        body = await r.read()
    assert b"server_shutdown" in body
    await finished(gw)
    assert_recorded_once(gw, logs, "stream_interrupted", "server_shutdown", "m")


async def test_unreachable_upstream_is_recorded_as_connect_failed(
    start_gateway: StartGateway, client: aiohttp.ClientSession, logs: list[dict[str, Any]]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        gw = await start_gateway(
            None,
            upstreams={"dead": {"kind": "openai", "base_url": f"http://127.0.0.1:{port}/v1"}},
            routes=[{"model": "m", "targets": [{"upstream": "dead"}]}],
        )
        async with client.post(f"{gw.url}/v1/chat/completions", json=BODY) as r:
            assert r.status == 502
    await finished(gw)
    assert_recorded_once(gw, logs, "network", "connect_failed", "m")
    assert value(gw, "gateway_upstream_attempts_total", upstream="dead", result="connect_failed")


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json", "invalid_request"),
        (json.dumps({**BODY, "model": "nobody-routes-this"}).encode(), "model_not_found"),
    ],
    ids=["malformed-body", "unknown-model"],
)
async def test_requests_rejected_before_routing_are_recorded_without_a_route(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
    payload: bytes,
    code: str,
) -> None:
    gw = await start_gateway(upstream, ("m",))
    headers = {"Content-Type": "application/json"}
    async with client.post(f"{gw.url}/v1/chat/completions", data=payload, headers=headers) as r:
        assert r.status in (400, 404)
    await finished(gw)
    assert_recorded_once(gw, logs, "api_error", code, "none")
    assert total(gw, "gateway_upstream_attempts_total") == 0
    assert upstream.requests == []


async def test_client_leaving_while_sending_its_body_is_recorded_as_disconnected(
    start_gateway: StartGateway, upstream: FakeUpstream, logs: list[dict[str, Any]]
) -> None:
    gw = await start_gateway(upstream, ("m",))
    port = int(gw.url.rsplit(":", 1)[1])
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"model": "m", "messages": ['
    )
    await writer.drain()
    writer.close()  # 972 bytes of the body never come
    await writer.wait_closed()
    await finished(gw)
    line = assert_recorded_once(gw, logs, "client_disconnected", "client_disconnected", "none")
    assert line["phase"] == "reading_request"
    assert value(gw, "gateway_client_disconnects_total", phase="reading_request") == 1
    assert upstream.requests == []
