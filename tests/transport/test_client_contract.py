"""The `HTTPClient` contract, run on both implementations (`Http1Client`, `AiohttpClient`)
against real upstreams on 127.0.0.1: the aiohttp fake (`tests.support.fake_upstream`) and a
raw one for answers an aiohttp server would not write (`tests.transport.raw_upstream`).

Every status is returned as it came (a redirect is not followed), headers are looked up
case-insensitively, bodies of every framing are read to their end, the bytes received before a
cut come before its error, each fault is the same `GatewayError` whichever client, connections
are bounded and reused only when the answer was read to its end, compressed bodies are inflated
bounded, and a cancelled read leaves a connection that closes cleanly.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress

import pytest

from gateway.errors import (
    ConnectFailed,
    ConnectionReset,
    ConnectTimeout,
    GatewayOverloaded,
    UpstreamProtocolError,
    UpstreamTruncated,
)
from gateway.transport import AiohttpClient, Http1Client, Http1Response, HTTPClient, HTTPResponse
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream
from tests.transport.raw_upstream import raw_upstream

EVENTS = fake.openai_chunks(["Hel", "lo"], finish_reason=None)
CLIENTS = {"http1": Http1Client, "aiohttp": AiohttpClient}


@pytest.fixture(params=sorted(CLIENTS))
def make_client(request: pytest.FixtureRequest) -> Callable[[int], HTTPClient]:
    return CLIENTS[request.param]  # type: ignore[no-any-return]


@pytest.fixture
async def client(make_client: Callable[[int], HTTPClient]) -> AsyncIterator[HTTPClient]:
    subject = make_client(8)
    await subject.start()
    yield subject
    await subject.aclose()


async def post(
    client: HTTPClient,
    url: str,
    model: str = "m",
    *,
    stream: bool = True,
    connect: float | None = 5,
    on_sent: Callable[[], None] | None = None,
    method: str = "POST",
) -> HTTPResponse:
    return await client.send(
        method,
        url,
        body=json.dumps({"model": model, "stream": stream}).encode(),
        headers={"Content-Type": "application/json"},
        stream=stream,
        connect=connect,
        on_sent=on_sent,
    )


def chat(upstream: FakeUpstream) -> str:
    return upstream.base_url + "/chat/completions"


async def read_all(response: HTTPResponse) -> bytes:
    try:
        return b"".join([chunk async for chunk in response.chunks()])
    finally:
        await response.aclose()


def answer(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode() + b"\r\n" + body


async def wait_until_cut_seen(response: HTTPResponse) -> None:
    """Until the client has taken in the cut (the test's reader is late on purpose)."""
    async with asyncio.timeout(5):  # a hang guard
        if isinstance(response, Http1Response):
            while not response._conn._closed:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.001)
        else:
            content = response._response.content  # type: ignore[attr-defined]
            while content.exception() is None and not content.is_eof():  # noqa: ASYNC110
                await asyncio.sleep(0.001)


async def loop_turns(n: int = 10) -> None:
    """Let the loop run a few turns: a FIN sent on loopback has reached the client by then."""
    for _ in range(n):
        await asyncio.sleep(0)


# --- statuses, heads, bodies ---------------------------------------------------------------------


@pytest.mark.parametrize("code", [200, 302, 404, 429, 503])
async def test_every_status_is_returned_as_it_came_and_a_redirect_is_not_followed(
    upstream: FakeUpstream, client: HTTPClient, code: int
) -> None:
    upstream.script("m", fake.status(code, body="{}", headers={"Location": "/v1/elsewhere"}))

    response = await post(client, chat(upstream))
    body = await read_all(response)

    assert response.status == code
    assert body == b"{}"
    assert len(upstream.requests) == 1


async def test_headers_are_case_insensitive_and_the_content_type_is_its_bare_media_type(
    client: HTTPClient,
) -> None:
    head = "HTTP/1.1 200 OK\nContent-Type: Text/Event-Stream; charset=UTF-8\nRetry-After: 7\n"
    async with raw_upstream(answer(head + "Content-Length: 0\n")) as up:
        response = await post(client, up.url)
        await read_all(response)

    assert response.headers.get("retry-after") == "7"
    assert response.headers.get("RETRY-AFTER") == "7"
    assert response.content_type == "text/event-stream"


async def test_an_answer_without_a_content_type_is_an_octet_stream(client: HTTPClient) -> None:
    async with raw_upstream(answer("HTTP/1.1 200 OK\nContent-Length: 2\n", b"hi")) as up:
        response = await post(client, up.url)
        assert await read_all(response) == b"hi"

    assert response.content_type == "application/octet-stream"


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "close-delimited"])
async def test_a_stream_body_is_read_to_its_end_whatever_its_framing(
    upstream: FakeUpstream, client: HTTPClient, chunked: bool
) -> None:
    upstream.script("m", fake.sse_stream(EVENTS, chunked=chunked))

    response = await post(client, chat(upstream))

    assert await read_all(response) == b"".join(EVENTS) + fake.DONE
    assert response.content_type == "text/event-stream"


async def test_a_body_with_a_length_is_read_to_its_end(
    upstream: FakeUpstream, client: HTTPClient
) -> None:
    upstream.script("m", fake.json_completion("Hello!"))

    response = await post(client, chat(upstream), stream=False)
    body = await response.read_bounded(1_000_000)
    await response.aclose()

    assert json.loads(body)["choices"][0]["message"]["content"] == "Hello!"


async def test_an_error_status_is_returned_with_its_body_read_bounded(
    upstream: FakeUpstream, client: HTTPClient
) -> None:
    upstream.script("m", fake.status(429, body="x" * 1000, headers={"Retry-After": "7"}))

    response = await post(client, chat(upstream))
    try:
        head = await response.read_bounded(10)
        rest = await response.read_bounded(10_000)
    finally:
        await response.aclose()

    assert response.status == 429
    assert (head, rest) == (b"x" * 10, b"x" * 990)


async def test_interim_answers_are_skipped(client: HTTPClient) -> None:
    interim = answer("HTTP/1.1 100 Continue\n") + answer("HTTP/1.1 103 Early Hints\nLink: </a>\n")
    async with raw_upstream(
        interim + answer("HTTP/1.1 201 Created\nContent-Length: 2\n", b"ok")
    ) as up:
        response = await post(client, up.url)
        assert await read_all(response) == b"ok"

    assert response.status == 201
    assert "link" not in response.headers


async def test_a_no_content_answer_and_a_head_answer_have_no_body(client: HTTPClient) -> None:
    async with raw_upstream(answer("HTTP/1.1 204 No Content\n")) as up:
        response = await post(client, up.url)
        assert await read_all(response) == b""
    async with raw_upstream(answer("HTTP/1.1 200 OK\nContent-Length: 5\n")) as up:
        response = await client.send("HEAD", up.url, body=b"", headers={}, stream=False, connect=5)
        assert await read_all(response) == b""

    assert response.headers.get("content-length") == "5"


async def test_the_request_names_its_host_and_sends_its_body_with_its_length(
    client: HTTPClient,
) -> None:
    async with raw_upstream(answer("HTTP/1.1 200 OK\nContent-Length: 0\n")) as up:
        await read_all(await post(client, up.url + "?api-version=1"))
        await read_all(
            await client.send("GET", up.url, body=b"", headers={}, stream=False, connect=5)
        )
        port = up.port

    post_request, get_request = (raw.decode() for raw in up.requests)
    post_lines = post_request.lower().split("\r\n")
    assert post_lines[0] == "post /v1/chat/completions?api-version=1 http/1.1"
    assert f"host: 127.0.0.1:{port}" in post_lines
    body = json.dumps({"model": "m", "stream": True})
    assert f"content-length: {len(body)}" in post_lines
    assert post_request.endswith("\r\n\r\n" + body)
    assert get_request.startswith("GET /v1/chat/completions HTTP/1.1\r\n")
    assert "content-length" not in get_request.lower()
    assert get_request.endswith("\r\n\r\n")


# --- on_sent ----------------------------------------------------------------------------------


async def test_each_request_reports_its_own_on_sent_once_before_its_answer(
    upstream: FakeUpstream, client: HTTPClient
) -> None:
    upstream.script("stall", fake.stall_before_first_event())
    logs: list[list[str]] = [[] for _ in range(3)]

    async def one(log: list[str]) -> HTTPResponse:
        response = await post(client, chat(upstream), "stall", on_sent=lambda: log.append("sent"))
        log.append("answered")
        return response

    responses = await asyncio.gather(*(one(log) for log in logs))  # in flight together
    for response in responses:
        await response.aclose()

    assert logs == [["sent", "answered"]] * 3


# --- faults -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [fake.cut_fin, fake.cut_rst], ids=["fin", "rst"])
async def test_bytes_held_when_a_cut_arrived_come_before_its_error(
    upstream: FakeUpstream, client: HTTPClient, cut: Callable[..., fake.Behaviour]
) -> None:
    upstream.script("m", cut(len(EVENTS), chunked=True, chunks=EVENTS, half=b"data: {"))
    response = await post(client, chat(upstream))
    await wait_until_cut_seen(response)
    received = bytearray()

    async def read() -> None:
        async for chunk in response.chunks():
            received.extend(chunk)

    with pytest.raises(UpstreamTruncated):
        await read()
    await response.aclose()

    assert bytes(received) == b"".join(EVENTS) + b"data: {"


async def test_a_body_short_of_its_length_is_truncated(
    upstream: FakeUpstream, client: HTTPClient
) -> None:
    upstream.script("m", fake.json_cut(10))

    response = await post(client, chat(upstream), stream=False)
    with pytest.raises(UpstreamTruncated):
        await response.read_bounded(1_000_000)
    await response.aclose()


async def test_a_reset_before_the_head_is_a_connection_reset(
    upstream: FakeUpstream, client: HTTPClient
) -> None:
    upstream.script("m", fake.reset_before_headers())

    with pytest.raises(ConnectionReset):
        await post(client, chat(upstream))


async def test_a_close_before_the_head_is_an_answer_never_given(client: HTTPClient) -> None:
    async with raw_upstream(b"", then="close") as up:
        with pytest.raises(ConnectionReset) as raised:
            await post(client, up.url)

    assert raised.value.message == "the upstream closed the connection without an answer"


@pytest.mark.parametrize(
    "reply",
    [
        b"garbage\r\n\r\n",
        answer("HTTP/1.1 200 OK\nX-Long: " + "a" * 9000 + "\nContent-Length: 0\n"),
        answer("HTTP/1.1 200 OK\n" + "X-Many: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\n" * 3000),
    ],
    ids=["garbage", "line-too-long", "head-too-large"],
)
async def test_an_invalid_head_is_a_protocol_error(client: HTTPClient, reply: bytes) -> None:
    async with raw_upstream(reply, then="stall") as up:
        with pytest.raises(UpstreamProtocolError) as raised:
            await post(client, up.url)

    assert raised.value.message == "the upstream sent an invalid HTTP response"


async def test_a_refused_connection_is_connect_failed_and_never_reported_sent(
    client: HTTPClient,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sent: list[str] = []

    with pytest.raises(ConnectFailed):
        await post(client, f"http://127.0.0.1:{port}/v1", on_sent=lambda: sent.append("x"))

    assert sent == []


@contextmanager
def full_backlog() -> Iterator[int]:
    """A port whose listening socket accepts nothing and whose backlog is full: a connect to it
    gets no answer (the kernel drops the SYN), without any traffic leaving the machine."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):
                filler = socket.socket()
                filler.setblocking(False)
                fillers.append(filler)
                with suppress(BlockingIOError):  # the handshake goes on in the kernel
                    filler.connect(("127.0.0.1", port))
            yield port
        finally:
            for filler in fillers:
                filler.close()


async def test_a_connection_not_made_within_the_connect_deadline_is_a_connect_timeout(
    client: HTTPClient,
) -> None:
    with full_backlog() as port, pytest.raises(ConnectTimeout) as raised:
        await post(client, f"http://127.0.0.1:{port}/v1", connect=0.2)

    assert raised.value.limit == 0.2


# --- the bound and the pool ------------------------------------------------------------------


async def test_a_closed_response_gives_its_connection_back_for_the_next_call(
    upstream: FakeUpstream, make_client: Callable[[int], HTTPClient]
) -> None:
    upstream.script("stall", fake.stall_before_first_event())
    subject = make_client(1)
    try:
        holder = await post(subject, chat(upstream), "stall")
        with pytest.raises(GatewayOverloaded):
            await post(subject, chat(upstream), connect=0.02)
        await holder.aclose()
        await holder.aclose()  # idempotent: gives back one place, not two

        response = await post(subject, chat(upstream), connect=0.02)
        with pytest.raises(GatewayOverloaded):
            await post(subject, chat(upstream), connect=0.02)
        await response.aclose()
    finally:
        await subject.aclose()
    assert [call.model for call in upstream.requests] == ["stall", "m"]


async def test_a_connection_whose_answer_was_read_to_its_end_is_reused(
    client: HTTPClient,
) -> None:
    async with raw_upstream(answer("HTTP/1.1 200 OK\nContent-Length: 2\n", b"hi")) as up:
        for _ in range(2):
            assert await read_all(await post(client, up.url, stream=False)) == b"hi"
        stats = client.pool_stats()

        assert up.connections == 1
        assert len(up.requests) == 2
    assert (stats.in_use, stats.idle) == (0, 1)


async def test_a_connection_closed_before_its_answer_was_read_is_not_reused(
    upstream: FakeUpstream, client: HTTPClient
) -> None:
    upstream.script("stall", fake.stall_after(1, EVENTS))
    response = await post(client, chat(upstream), "stall")
    assert client.pool_stats().in_use == 1
    async for _ in response.chunks():
        break  # one read of the body, not all of it

    await response.aclose()

    await upstream.calls_for("stall")[0].wait_closed_by_peer(timeout=5)
    assert client.pool_stats().in_use == client.pool_stats().idle == 0


async def test_an_aborted_answer_is_closed_at_once_and_its_place_given_back_on_close(
    upstream: FakeUpstream, make_client: Callable[[int], HTTPClient]
) -> None:
    """`abort()` is synchronous: the upstream sees the close without the caller awaiting
    anything; `aclose()` still gives the place back, and the connection is never reused."""
    upstream.script("stall", fake.stall_after(1, EVENTS))
    subject = make_client(1)
    try:
        response = await post(subject, chat(upstream), "stall")
        async for _ in response.chunks():
            break
        response.abort()
        response.abort()  # idempotent
        await upstream.calls_for("stall")[0].wait_closed_by_peer(timeout=5)
        with pytest.raises(GatewayOverloaded):  # the place is still held until `aclose`
            await post(subject, chat(upstream), connect=0.02)
        await response.aclose()
        assert subject.pool_stats().idle == 0
        await read_all(await post(subject, chat(upstream), connect=0.5))
    finally:
        await subject.aclose()


async def test_an_idle_connection_the_upstream_closed_is_not_reused(client: HTTPClient) -> None:
    async with raw_upstream(
        answer("HTTP/1.1 200 OK\nContent-Length: 2\n", b"hi"), then="close"
    ) as up:
        assert await read_all(await post(client, up.url)) == b"hi"
        await up.wait_server_closed(0)
        await loop_turns()

        assert await read_all(await post(client, up.url)) == b"hi"  # not a reset

        assert up.connections == 2


# --- compressed bodies ------------------------------------------------------------------------


async def test_a_gzip_answer_is_inflated(client: HTTPClient) -> None:
    body = gzip.compress(b'{"answer": "' + b"x" * 5000 + b'"}')
    head = f"HTTP/1.1 200 OK\nContent-Encoding: gzip\nContent-Length: {len(body)}\n"
    async with raw_upstream(answer(head, body)) as up:
        response = await post(client, up.url, stream=False)
        data = await response.read_bounded(1_000_000)
        await response.aclose()

    assert json.loads(data) == {"answer": "x" * 5000}


async def test_a_gzip_bomb_is_inflated_no_further_than_the_read_asks(client: HTTPClient) -> None:
    bomb = gzip.compress(b"\0" * 10_000_000, compresslevel=9)
    head = f"HTTP/1.1 200 OK\nContent-Encoding: gzip\nContent-Length: {len(bomb)}\n"
    async with raw_upstream(answer(head, bomb)) as up:
        response = await post(client, up.url, stream=False)
        tracemalloc.start()
        try:
            data = await response.read_bounded(1024)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            await response.aclose()

    assert data == b"\0" * 1024
    assert peak < 1_000_000  # bytes: nothing near the 10 MB it inflates to


# --- cancellation ---------------------------------------------------------------------------


async def test_a_cancelled_read_leaves_a_connection_that_closes_cleanly(
    upstream: FakeUpstream, client: HTTPClient
) -> None:
    upstream.script("stall", fake.stall_before_first_event())
    response = await post(client, chat(upstream), "stall")
    chunks = response.chunks()
    reading = asyncio.ensure_future(anext(chunks))
    await loop_turns()
    assert not reading.done()

    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    await chunks.aclose()
    await response.aclose()

    await upstream.calls_for("stall")[0].wait_closed_by_peer(timeout=5)
    assert client.pool_stats().in_use == 0
