"""Every async generator on a request's path is closed by the gateway, none is left to the
garbage collector: asyncio's finaliser hook would close it from a later loop turn, woken
through the loop's self-pipe (a syscall and a task per request on the hot path), and whatever
it holds - an upstream's connection, a kept slot - would stay open until then.

The hook is wrapped for each test: a gateway generator that reaches it is reported by name.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import aiohttp
import pytest
import structlog

from tests.conftest import RunningGateway, StartGateway
from tests.e2e.test_client_disconnect import eventually, finished_lines
from tests.support import anthropic_wire as claude
from tests.support import fake_upstream as fake
from tests.support.anthropic_gateway import CLAUDE, GPT, MESSAGES, anthropic_routes
from tests.support.fake_upstream import FakeUpstream

GATEWAY = "/gateway/"


@contextlib.contextmanager
def left_to_the_collector() -> Iterator[list[str]]:
    """The names of the gateway's async generators that asyncio's finaliser hook closed while
    the block ran (entered in the test's body: the loop sets its hooks anew at each run)."""
    firstiter, finalizer = sys.get_asyncgen_hooks()
    assert finalizer is not None  # the running loop's
    left: list[str] = []

    def record(agen: AsyncGenerator[Any, Any]) -> None:
        code = agen.ag_code  # type: ignore[attr-defined]
        if GATEWAY in code.co_filename:
            left.append(code.co_qualname)
        finalizer(agen)

    sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=record)
    try:
        yield left
    finally:
        sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)


async def gateway(
    start_gateway: StartGateway, upstream: FakeUpstream, *, stream: bool = True
) -> RunningGateway:
    if stream:
        upstream.script(GPT, fake.sse_stream(fake.openai_chunks(["Hel", "lo"])))
        events = claude.anthropic_events(["Hel", "lo"])
        upstream.script(CLAUDE, fake.sse_stream(events, done=False))
    else:
        upstream.script(GPT, fake.json_completion("Hello"))
        upstream.script(CLAUDE, fake.status(200, body=claude.anthropic_message("Hello")))
    return await start_gateway(None, **anthropic_routes(upstream), heartbeat=None)


async def read(client: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> bytes:
    async with client.post(url, json=body) as reply:
        assert reply.status == 200, await reply.text()
        return await reply.read()


@pytest.mark.parametrize(
    ("path", "model", "stream"),
    [
        ("/v1/chat/completions", GPT, True),
        ("/v1/chat/completions", GPT, False),
        ("/v1/chat/completions", CLAUDE, True),  # translated, event by event
        ("/v1/messages", CLAUDE, True),
        ("/v1/messages", CLAUDE, False),
    ],
    ids=["chat-stream", "chat-json", "chat-translated-stream", "messages-stream", "messages-json"],
)
async def test_no_generator_of_a_finished_request_is_left_to_the_collector(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    path: str,
    model: str,
    stream: bool,
) -> None:
    gw = await gateway(start_gateway, upstream, stream=stream)
    body = {"model": model, "messages": MESSAGES, "stream": stream, "max_tokens": 16}
    with left_to_the_collector() as left:
        for _ in range(3):
            assert b"lo" in await read(client, gw.url + path, body)
        gc.collect()  # anything held only by a cycle reaches the hook now

    assert left == []


async def test_no_generator_of_a_stream_its_client_left_is_left_to_the_collector(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
) -> None:
    gw = await gateway(start_gateway, upstream)
    upstream.script(GPT, fake.stall_after(1))
    body = {"model": GPT, "messages": MESSAGES, "stream": True}
    with structlog.testing.capture_logs() as logs, left_to_the_collector() as left:
        async with client.post(f"{gw.url}/v1/chat/completions", json=body) as reply:
            assert reply.status == 200
            await reply.content.readuntil(b"\n\n")
            call = upstream.requests[0]
        await call.wait_closed_by_peer()
        await eventually(lambda: bool(finished_lines(logs)), "the stream's finished line")
        gc.collect()

    assert left == []
