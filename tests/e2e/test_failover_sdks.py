"""Retries and failover as the official SDKs see them: one clean answer, or the right exception.

Both SDKs never retry here (`max_retries=0`): every retry the fake upstream sees is the
gateway's. The OpenAI SDK talks to a chain of `openai`-kind targets, the Anthropic SDK to a
chain of `anthropic`-kind targets (the same fake upstream behind both).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import RunningGateway, StartGateway
from tests.support import anthropic_wire as claude
from tests.support import fake_upstream as fake
from tests.support.chain_gateway import Timed, chain, report, route, target
from tests.support.fake_upstream import FakeUpstream

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
WORDS = ["The ", "quick ", "brown ", "fox."]


@pytest.fixture
async def gateway(upstream: FakeUpstream, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(
        None,
        heartbeat=None,
        **chain(
            upstream,
            route("gpt", target("gpt-primary"), target("gpt-backup")),
            route(
                "claude",
                target("claude-primary", "claude"),
                target("claude-backup", "claude"),
            ),
        ),
    )


@pytest.fixture
async def openai_sdk(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key="unused", max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def anthropic_sdk(gateway: RunningGateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key="unused", max_retries=0
    ) as client:
        yield client


async def openai_text(sdk: openai.AsyncOpenAI) -> tuple[str, set[str]]:
    stream = await sdk.chat.completions.create(model="gpt", messages=MESSAGES, stream=True)
    text, models = [], set()
    async for chunk in stream:
        models.add(chunk.model)
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
    return "".join(text), models


async def test_openai_sdk_gets_the_backups_answer_after_the_primary_fails(
    upstream: FakeUpstream, openai_sdk: openai.AsyncOpenAI
) -> None:
    upstream.script("gpt-primary", fake.status(500))
    upstream.script("gpt-backup", fake.sse_stream(fake.openai_chunks(WORDS, model="gpt-backup")))
    with Timed() as timed:
        text, models = await openai_text(openai_sdk)
    report(
        "openai SDK: primary 500 x3", "the backup's whole answer", timed.elapsed, upstream.requests
    )
    assert text == "".join(WORDS)
    assert models == {"gpt-backup"}  # the model that answered
    assert [call.model for call in upstream.requests] == ["gpt-primary"] * 3 + ["gpt-backup"]


async def test_openai_sdk_gets_a_rate_limit_error_when_every_target_is_limited(
    upstream: FakeUpstream, openai_sdk: openai.AsyncOpenAI
) -> None:
    limited = fake.status(429, headers={"Retry-After": "40"})
    upstream.script("gpt-primary", limited)
    upstream.script("gpt-backup", limited)
    with pytest.raises(openai.RateLimitError) as raised:
        await openai_sdk.chat.completions.create(model="gpt", messages=MESSAGES, stream=True)
    assert raised.value.response.headers["Retry-After"] == "40"
    assert [call.model for call in upstream.requests] == ["gpt-primary", "gpt-backup"]


async def test_anthropic_sdk_gets_the_answer_after_an_overloaded_primary_recovers(
    upstream: FakeUpstream, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    overloaded = fake.status(529, body=claude.anthropic_error("overloaded_error", "Overloaded"))
    events = claude.anthropic_events(WORDS, model="claude-primary")
    recovered = fake.sse_stream(events, done=False)
    upstream.script("claude-primary", fake.sequence(overloaded, recovered))
    with Timed() as timed:
        async with anthropic_sdk.messages.stream(
            model="claude", max_tokens=64, messages=MESSAGES
        ) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            message = await stream.get_final_message()
    report("anthropic SDK: primary 529 once", "the whole answer", timed.elapsed, upstream.requests)
    assert text == "".join(WORDS)
    assert message.model == "claude-primary"
    assert [call.model for call in upstream.requests] == ["claude-primary"] * 2
    assert upstream.requests[0].path == "/v1/messages"


async def test_anthropic_sdk_gets_the_backups_answer_after_a_silent_primary(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    upstream.script("claude-primary", fake.stall_before_headers())
    events = claude.anthropic_events(WORDS, model="claude-backup")
    upstream.script("claude-backup", fake.sse_stream(events, done=False))
    gw = await start_gateway(
        None,
        heartbeat=None,
        **chain(
            upstream,
            route(
                "claude",
                target("claude-primary", "claude", timeouts={"first_byte": 0.3}),
                target("claude-backup", "claude"),
            ),
        ),
    )
    async with anthropic.AsyncAnthropic(base_url=gw.url, api_key="x", max_retries=0) as sdk:
        with Timed() as timed:
            async with sdk.messages.stream(
                model="claude", max_tokens=64, messages=MESSAGES
            ) as stream:
                message = await stream.get_final_message()
    report(
        "anthropic SDK: silent primary, first_byte 0.3 s",
        "the backup's whole answer",
        timed.elapsed,
        upstream.requests,
    )
    assert "".join(block.text for block in message.content if block.type == "text") == "".join(
        WORDS
    )
    assert message.model == "claude-backup"
    assert [call.model for call in upstream.requests] == ["claude-primary", "claude-backup"]
