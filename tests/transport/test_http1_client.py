"""`Http1Client`'s own promises, beyond the contract both clients keep
(tests/transport/test_client_contract.py): its request head (`User-Agent`, header injection),
TLS with verification, names resolved in order, the encodings it inflates or refuses, the
reads' size and the transport paused while a reader lags, connections reused only when nothing
else arrived and closed once idle too long or when the client closes.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.errors import (
    ConnectFailed,
    InvalidRequest,
    UpstreamProtocolError,
    UpstreamTruncated,
)
from gateway.transport import Http1Client, Http1Response
from gateway.transport import http1_client as module
from tests.transport.raw_upstream import raw_upstream
from tests.transport.test_client_contract import answer, post, read_all

OK = answer("HTTP/1.1 200 OK\nContent-Length: 2\n", b"hi")


@pytest.fixture
async def client() -> AsyncIterator[Http1Client]:
    subject = Http1Client(8)
    yield subject
    await subject.aclose()


# --- the request ------------------------------------------------------------------------------


async def test_the_user_agent_is_the_gateways_unless_the_caller_gave_one(
    client: Http1Client,
) -> None:
    async with raw_upstream(OK) as up:
        await read_all(await post(client, up.url))
        given = await client.send(
            "POST", up.url, body=b"{}", headers={"user-agent": "mine/1"}, stream=True, connect=5
        )
        await read_all(given)

    first, second = (raw.decode().lower() for raw in up.requests)
    assert "\r\nuser-agent: sse-gateway\r\n" in first
    assert "\r\nuser-agent: mine/1\r\n" in second
    assert second.count("user-agent") == 1


async def test_a_header_holding_a_line_break_is_refused_before_anything_is_sent(
    client: Http1Client,
) -> None:
    async with raw_upstream(OK) as up:
        with pytest.raises(InvalidRequest):
            await client.send(
                "POST", up.url, body=b"{}", headers={"X-A": "1\r\nX-B: 2"}, stream=True, connect=5
            )

        assert up.requests == []
    assert client.pool_stats().in_use == 0


async def test_a_name_is_resolved_and_its_addresses_tried_in_order(client: Http1Client) -> None:
    async with raw_upstream(OK) as up:  # listens on 127.0.0.1 only: a ::1 first is refused
        response = await post(client, f"http://localhost:{up.port}/v1/chat/completions")
        assert await read_all(response) == b"hi"

    assert f"\r\nHost: localhost:{up.port}\r\n" in up.requests[0].decode()


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for `localhost` (and its key), made by the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def tls_server(certificate: tuple[Path, Path]) -> asyncio.Server:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(OK)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)


async def test_https_verifies_the_upstreams_certificate_for_its_name(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default context trusts what `SSL_CERT_FILE` names: here, this certificate only.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    server = await tls_server(certificate)
    port = server.sockets[0].getsockname()[1]
    subject = Http1Client(2)
    try:
        response = await post(subject, f"https://localhost:{port}/v1/chat/completions")
        assert await read_all(response) == b"hi"
        with pytest.raises(ConnectFailed):  # the certificate does not name 127.0.0.1
            await post(subject, f"https://127.0.0.1:{port}/v1/chat/completions")
    finally:
        await subject.aclose()
        server.close()
        await server.wait_closed()


async def test_an_untrusted_certificate_is_connect_failed(
    certificate: tuple[Path, Path], client: Http1Client
) -> None:
    server = await tls_server(certificate)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConnectFailed):
            await post(client, f"https://localhost:{port}/v1/chat/completions")
    finally:
        server.close()
        await server.wait_closed()


# --- encodings --------------------------------------------------------------------------------


def deflated(data: bytes, *, raw: bool) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize("raw", [False, True], ids=["zlib", "raw"])
async def test_a_deflate_answer_is_inflated_wrapped_or_raw(client: Http1Client, raw: bool) -> None:
    body = deflated(b"x" * 50_000, raw=raw)
    head = f"HTTP/1.1 200 OK\nContent-Encoding: deflate\nContent-Length: {len(body)}\n"
    async with raw_upstream(answer(head, body)) as up:
        response = await post(client, up.url, stream=False)
        data = await response.read_bounded(1_000_000)
        await response.aclose()

    assert data == b"x" * 50_000


async def test_a_gzip_stream_is_inflated_as_it_is_read(client: Http1Client) -> None:
    events = b"data: {}\n\n" * 5000
    body = deflated(events, raw=False)
    head = f"HTTP/1.1 200 OK\nContent-Encoding: deflate\nContent-Length: {len(body)}\n"
    async with raw_upstream(answer(head, body)) as up:
        response = await post(client, up.url)
        chunks = [chunk async for chunk in response.chunks()]
        await response.aclose()

    assert b"".join(chunks) == events
    assert max(map(len, chunks)) <= 16 * 1024


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, br"])
async def test_an_encoding_it_cannot_decode_is_a_protocol_error(
    client: Http1Client, encoding: str
) -> None:
    head = f"HTTP/1.1 200 OK\nContent-Encoding: {encoding}\nContent-Length: 4\n"
    async with raw_upstream(answer(head, b"abcd")) as up:
        response = await post(client, up.url, stream=False)
        with pytest.raises(UpstreamProtocolError):
            await response.read_bounded(100)
        await response.aclose()

    assert response.status == 200  # the head is returned; its body cannot be read


async def test_a_body_that_does_not_inflate_is_a_truncated_one(client: Http1Client) -> None:
    head = "HTTP/1.1 200 OK\nContent-Encoding: gzip\nContent-Length: 8\n"
    async with raw_upstream(answer(head, b"notgzip!")) as up:
        response = await post(client, up.url, stream=False)
        with pytest.raises(UpstreamTruncated):  # aiohttp's class for it as well
            await response.read_bounded(100)
        await response.aclose()


# --- reads and flow control -------------------------------------------------------------------


async def test_a_reader_that_lags_pauses_the_connection_and_loses_nothing(
    client: Http1Client,
) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB
    head = f"HTTP/1.1 200 OK\nContent-Length: {len(body)}\n"
    async with raw_upstream(answer(head, body), then="stall") as up:
        response = await post(client, up.url)
        assert isinstance(response, Http1Response)
        conn = response._conn
        async with asyncio.timeout(5):  # a hang guard: until the buffer crossed its mark
            while not conn._paused:  # noqa: ASYNC110 - the protocol's own state
                await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)  # time for more to arrive, had reading not stopped
        held = conn._buffered

        chunks = [chunk async for chunk in response.chunks()]
        await response.aclose()

    assert held < 16 * 1024 + 256 * 1024  # the mark, plus what the read that crossed it took
    assert b"".join(chunks) == body
    assert max(map(len, chunks)) == 16 * 1024


# --- the pool ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        OK + b"HTTP/1.1 200 OK\r\n",  # more after the answer
        answer("HTTP/1.1 200 OK\nConnection: close\nContent-Length: 2\n", b"hi"),
        answer("HTTP/1.0 200 OK\nContent-Length: 2\n", b"hi"),
    ],
    ids=["bytes-after-the-answer", "connection-close", "http-1.0"],
)
async def test_a_connection_is_not_reused_unless_it_may_be(
    client: Http1Client, reply: bytes
) -> None:
    async with raw_upstream(reply) as up:
        for _ in range(2):
            assert await read_all(await post(client, up.url)) == b"hi"
        await up.wait_peer_closed(0)  # closed by the client, at once

        assert up.connections == 2


async def test_an_idle_connection_is_closed_after_the_keep_alive(
    client: Http1Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(module, "_KEEP_ALIVE", 0.05)
    async with raw_upstream(OK) as up:
        await read_all(await post(client, up.url))
        assert client.pool_stats().idle == 1

        await up.wait_peer_closed(0)

    assert client.pool_stats().idle == 0


async def test_closing_the_client_closes_its_connections_in_use(client: Http1Client) -> None:
    head = "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n"
    async with raw_upstream(answer(head, b"4\r\nabcd\r\n"), then="stall") as up:
        response = await post(client, up.url)

        await client.aclose()

        await up.wait_peer_closed(0)
        with pytest.raises(UpstreamTruncated):
            await response.read_bounded(100)
        await response.aclose()
    assert client.pool_stats().in_use == 0
