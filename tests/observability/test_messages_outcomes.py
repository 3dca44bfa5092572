"""`POST /v1/messages` is recorded like every request: once, with `endpoint="messages"`.

Each case drives one Messages request through a real gateway in front of the fake Anthropic
upstream and checks, with the same helper as the Chat Completions cases, that the requests
counter, the error counter and the one finished log line agree - and that the tokens Anthropic
reports (`message_start`'s input, `message_delta`'s output) are counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from tests.conftest import StartGateway
from tests.observability.scrape import finished, total, value
from tests.observability.test_request_outcomes import assert_recorded_once
from tests.support import anthropic_wire as claude
from tests.support import fake_upstream as fake
from tests.support.anthropic_gateway import CLAUDE, GPT, anthropic_routes, messages_body
from tests.support.fake_upstream import FakeUpstream

EVENTS = claude.anthropic_events(["Hel", "lo", "!"])


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


@dataclass(frozen=True)
class Case:
    behaviour: Any
    outcome: str
    code: str | None = None
    stream: bool = True
    headers: tuple[tuple[str, str], ...] = ()
    attempt: str = "ok"


CASES = {
    "completed": Case(fake.sse_stream(EVENTS, done=False), "completed"),
    "message-stop-added": Case(
        fake.sse_stream(claude.anthropic_events(["a"], stop=False), done=False), "completed"
    ),
    "cut": Case(
        fake.cut_fin(4, chunked=True, chunks=EVENTS), "stream_interrupted", "upstream_truncated"
    ),
    "upstream-error-event": Case(
        fake.sse_stream([*EVENTS[:4], claude.error_event()], done=False),
        "api_error",
        "upstream_error_event",
    ),
    "idle-timeout": Case(
        fake.stall_after(4, EVENTS),
        "timeout",
        "idle_timeout",
        headers=(("x-gateway-idle-timeout", "0.2"),),
    ),
    "upstream-529": Case(
        fake.status(529, body=claude.anthropic_error("overloaded_error", "Overloaded")),
        "api_error",
        "upstream_status_5xx",
        attempt="upstream_status_5xx",
    ),
    "upstream-429": Case(
        fake.status(429, body=claude.anthropic_error("rate_limit_error", "slow down")),
        "rate_limit",
        "upstream_rate_limited",
        attempt="upstream_rate_limited",
    ),
    "json-completed": Case(
        fake.status(200, body=claude.anthropic_message()), "completed", stream=False
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_each_messages_path_is_recorded_once_under_the_messages_endpoint(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
    case: Case,
) -> None:
    upstream.script(CLAUDE, case.behaviour)
    gw = await start_gateway(None, **anthropic_routes(upstream), heartbeat=None)
    async with client.post(
        f"{gw.url}/v1/messages",
        json=messages_body(stream=case.stream),
        headers=dict(case.headers),
    ) as response:
        body = await response.read()
    await finished(gw)

    line = assert_recorded_once(gw, logs, case.outcome, case.code, CLAUDE, endpoint="messages")
    assert value(gw, "gateway_upstream_attempts_total", upstream="claude", result=case.attempt) == 1
    assert value(gw, "gateway_relayed_bytes_total", route=CLAUDE) == len(body) == line["bytes"]


async def test_anthropic_usage_is_counted_as_input_and_output_tokens(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
) -> None:
    events = [claude.message_start(input_tokens=31), *EVENTS[1:]]  # message_delta: 3 tokens out
    upstream.script(CLAUDE, fake.sse_stream(events, done=False))
    gw = await start_gateway(None, **anthropic_routes(upstream))
    async with client.post(f"{gw.url}/v1/messages", json=messages_body()) as response:
        await response.read()
    await finished(gw)

    assert value(gw, "gateway_tokens_total", route=CLAUDE, upstream="claude", kind="input") == 31
    assert value(gw, "gateway_tokens_total", route=CLAUDE, upstream="claude", kind="output") == 3
    [line] = [entry for entry in logs if entry["event"] == "stream_finished"]
    assert line["tokens"] == {"input": 31, "output": 3}


async def test_a_model_of_the_other_api_is_recorded_as_an_invalid_request_without_a_route(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
) -> None:
    gw = await start_gateway(None, **anthropic_routes(upstream))
    body = {"model": GPT, "messages": [{"role": "user", "content": "hi"}]}
    async with client.post(f"{gw.url}/v1/messages/count_tokens", json=body) as response:
        assert response.status == 400  # token counting is not translated
    await finished(gw)

    assert_recorded_once(gw, logs, "api_error", "invalid_request", "none", endpoint="count_tokens")
    assert total(gw, "gateway_upstream_attempts_total") == 0
