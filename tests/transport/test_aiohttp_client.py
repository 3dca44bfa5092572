"""`AiohttpClient`, the transport under the HTTP providers, against a real fake upstream.

It returns every status for the provider to judge, reports each request's own `on_sent` hook
once its head is written (requests in flight together never see each other's), reads bounded,
relays the bytes received before a cut ahead of the cut's error, gives its connection back on
`aclose()` (at once reusable), and raises only `GatewayError`s.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from gateway.errors import ConnectFailed, GatewayOverloaded, UpstreamTruncated
from gateway.transport import AiohttpClient, AiohttpResponse
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream

EVENTS = fake.openai_chunks(["Hel", "lo"], finish_reason=None)


@pytest.fixture
async def client() -> AsyncIterator[AiohttpClient]:
    subject = AiohttpClient(8)
    await subject.start()
    yield subject
    await subject.aclose()


async def post(
    client: AiohttpClient,
    base_url: str,
    model: str,
    *,
    stream: bool = True,
    connect: float | None = 5,
    on_sent: Callable[[], None] | None = None,
) -> AiohttpResponse:
    return await client.send(
        "POST",
        base_url + "/chat/completions",
        body=json.dumps({"model": model, "stream": stream}).encode(),
        headers={"Content-Type": "application/json"},
        stream=stream,
        connect=connect,
        on_sent=on_sent,
    )


async def test_each_request_reports_its_own_on_sent_once_before_its_answer(
    upstream: FakeUpstream, client: AiohttpClient
) -> None:
    upstream.script("stall", fake.stall_before_first_event())
    logs: list[list[str]] = [[] for _ in range(3)]

    async def one(log: list[str]) -> AiohttpResponse:
        def sent() -> None:
            log.append("sent")

        response = await post(client, upstream.base_url, "stall", on_sent=sent)
        log.append("answered")
        return response

    responses = await asyncio.gather(*(one(log) for log in logs))  # in flight together
    for response in responses:
        await response.aclose()

    assert logs == [["sent", "answered"]] * 3


async def test_a_request_without_an_on_sent_hook_is_sent_as_well(
    upstream: FakeUpstream, client: AiohttpClient
) -> None:
    response = await post(client, upstream.base_url, "m")
    body = b"".join([chunk async for chunk in response.chunks()])
    await response.aclose()

    assert body.endswith(fake.DONE)
    assert response.content_type == "text/event-stream"


async def test_a_refused_connection_is_connect_failed_and_never_reported_sent(
    client: AiohttpClient,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sent: list[str] = []

    with pytest.raises(ConnectFailed):
        await post(client, f"http://127.0.0.1:{port}/v1", "m", on_sent=lambda: sent.append("x"))

    assert sent == []


async def test_an_error_status_is_returned_with_its_headers_and_body_read_bounded(
    upstream: FakeUpstream, client: AiohttpClient
) -> None:
    upstream.script("m", fake.status(429, body="x" * 1000, headers={"Retry-After": "7"}))

    response = await post(client, upstream.base_url, "m")
    try:
        head = await response.read_bounded(10)
        rest = await response.read_bounded(10_000)
    finally:
        await response.aclose()

    assert response.status == 429
    assert response.headers.get("retry-after") == "7"  # case-insensitive
    assert head == b"x" * 10
    assert rest == b"x" * 990


async def test_a_closed_response_gives_its_connection_back_for_the_next_call(
    upstream: FakeUpstream,
) -> None:
    upstream.script("stall", fake.stall_before_first_event())
    subject = AiohttpClient(1)
    try:
        holder = await post(subject, upstream.base_url, "stall")
        with pytest.raises(GatewayOverloaded):
            await post(subject, upstream.base_url, "m", connect=0.02)
        await holder.aclose()
        await holder.aclose()  # idempotent: gives back one place, not two

        response = await post(subject, upstream.base_url, "m", connect=0.02)
        with pytest.raises(GatewayOverloaded):
            await post(subject, upstream.base_url, "m", connect=0.02)
        await response.aclose()
    finally:
        await subject.aclose()
    assert [call.model for call in upstream.requests] == ["stall", "m"]


@pytest.mark.parametrize("cut", [fake.cut_fin, fake.cut_rst], ids=["fin", "rst"])
async def test_bytes_held_when_a_cut_arrived_come_before_its_error(
    upstream: FakeUpstream, client: AiohttpClient, cut: Callable[..., fake.Behaviour]
) -> None:
    upstream.script("m", cut(len(EVENTS), chunked=True, chunks=EVENTS, half=b"data: {"))
    response = await post(client, upstream.base_url, "m")
    content = response._response.content  # aiohttp's reader: only to wait for the cut
    async with asyncio.timeout(5):  # a hang guard: until aiohttp has seen the cut
        while content.exception() is None and not content.is_eof():  # noqa: ASYNC110
            await asyncio.sleep(0.001)

    received = bytearray()

    async def read_all() -> None:
        async for chunk in response.chunks():
            received.extend(chunk)

    with pytest.raises(UpstreamTruncated):
        await read_all()
    await response.aclose()

    assert bytes(received) == b"".join(EVENTS) + b"data: {"
