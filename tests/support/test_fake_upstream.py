"""Self-tests of the fake upstream: what a plain aiohttp client really sees, behaviour by behaviour.

They pin aiohttp 3.14's client-side view of each cut, so e2e tests can rely on the fake.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import aiohttp
import pytest

from tests.support.fake_upstream import (
    CREATED,
    DONE,
    FakeUpstream,
    UpstreamCall,
    cut_fin,
    cut_rst,
    end_clean_without_done,
    html,
    huge_event,
    invalid_json_event,
    json_completion,
    json_cut,
    openai_chunks,
    openai_error,
    sequence,
    sse_stream,
    stall_after,
    stall_before_first_event,
    stall_before_headers,
    status,
)

DEFAULT_CHUNKS = openai_chunks(["Hel", "lo", "!"])
HALF = b'data: {"id":"chatcmpl-fake","obj'


def post(session: aiohttp.ClientSession, up: FakeUpstream, model: str) -> Any:
    return session.post(
        f"{up.base_url}/chat/completions",
        json={"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": "Bearer sk-test"},
    )


async def read_until_error(resp: aiohttp.ClientResponse) -> tuple[bytes, Exception | None]:
    """Everything the client could read, and the exception that ended the body (None: EOF)."""
    received = b""
    try:
        async for data in resp.content.iter_any():
            received += data
    except (aiohttp.ClientError, OSError) as exc:
        return received, exc
    return received, None


def data_of(event: bytes) -> Any:
    assert event.startswith(b"data: ")
    assert event.endswith(b"\n\n")
    return json.loads(event[len(b"data: ") : -2])


# --- recording and dispatch -----------------------------------------------------------------


async def test_calls_are_recorded_in_order_with_body_and_headers(upstream, session):
    for model in ("a", "b"):
        async with post(session, upstream, model) as resp:
            await resp.read()

    first, second = await upstream.next_call(), await upstream.next_call()

    assert upstream.requests == [first, second]
    assert (first.model, second.model) == ("a", "b")
    assert first.body["messages"] == [{"role": "user", "content": "hi"}]
    assert json.loads(first.raw_body) == first.body
    assert first.headers["authorization"] == "Bearer sk-test"
    assert (first.method, first.path) == ("POST", "/v1/chat/completions")
    assert first.started.is_set()
    assert first.finished.is_set()
    assert not first.closed_by_peer.is_set()
    assert first.close_time is None


async def test_script_picks_the_behaviour_by_model_and_default_answers_the_rest(upstream, session):
    upstream.script("broken", status(500))

    async with post(session, upstream, "broken") as resp:
        assert resp.status == 500
    async with post(session, upstream, "other") as resp:
        assert resp.status == 200
        assert await resp.read() == b"".join(DEFAULT_CHUNKS) + DONE


async def test_any_path_under_v1_is_served_and_a_body_without_model_uses_default(upstream, session):
    async with session.get(f"{upstream.base_url}/models") as resp:
        assert resp.status == 200
        await resp.read()

    call = await upstream.next_call()
    assert (call.method, call.path, call.model, call.body) == ("GET", "/v1/models", "", {})


async def test_next_call_raises_assertion_error_when_no_request_comes(upstream):
    with pytest.raises(AssertionError, match="no new upstream request"):
        await upstream.next_call(timeout=0.01)


async def test_forget_calls_drops_the_recorded_calls_and_keeps_recording(upstream, session):
    for model in ("a", "b"):
        async with post(session, upstream, model) as resp:
            await resp.read()
    upstream.forget_calls()
    async with post(session, upstream, "c") as resp:
        await resp.read()

    assert [call.model for call in upstream.requests] == ["c"]
    assert (await upstream.next_call()).model == "c"


async def test_sequence_uses_behaviours_in_turn_then_repeats_the_last(upstream, session):
    upstream.script("flaky", sequence(status(500), status(429), json_completion()))

    statuses = []
    for _ in range(4):
        async with post(session, upstream, "flaky") as resp:
            await resp.read()
            statuses.append(resp.status)

    assert statuses == [500, 429, 200, 200]


# --- event builders -------------------------------------------------------------------------


def test_openai_chunks_have_role_first_then_content_then_finish():
    events = [data_of(event) for event in openai_chunks(["Hel", "lo"], model="m", id="c1")]

    assert [e["choices"][0]["delta"] for e in events] == [
        {"role": "assistant", "content": "Hel"},
        {"content": "lo"},
        {},
    ]
    assert [e["choices"][0]["finish_reason"] for e in events] == [None, None, "stop"]
    assert {(e["id"], e["model"], e["object"], e["created"]) for e in events} == {
        ("c1", "m", "chat.completion.chunk", CREATED)
    }
    assert b", " not in b"".join(openai_chunks(["Hel", "lo"]))


def test_openai_chunks_without_finish_reason_have_no_final_chunk():
    events = [data_of(event) for event in openai_chunks(["a", "b"], finish_reason=None)]

    assert len(events) == 2
    assert all(e["choices"][0]["finish_reason"] is None for e in events)


# --- streams that end properly --------------------------------------------------------------


async def test_default_stream_is_three_chunks_then_done_each_in_its_own_http_chunk(
    upstream, session
):
    async with post(session, upstream, "any") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["Transfer-Encoding"] == "chunked"
        http_chunks, current = [], b""
        async for data, end_of_http_chunk in resp.content.iter_chunks():
            current += data
            if end_of_http_chunk:
                http_chunks.append(current)
                current = b""

    assert http_chunks == [*DEFAULT_CHUNKS, DONE]
    assert len(DEFAULT_CHUNKS) == 4


async def test_sse_stream_writes_given_bytes_exactly_with_a_delay(upstream, session):
    chunks = [b"event: ping\n\n", b": comment\r\n\r\n", b"data: x\n", b"\n"]
    upstream.script("m", sse_stream(chunks, delay=0.01, done=False))

    async with post(session, upstream, "m") as resp:
        assert await resp.read() == b"".join(chunks)


async def test_close_delimited_stream_has_no_length_nor_chunking_and_ends_with_eof(
    upstream, session
):
    upstream.script("m", sse_stream(chunked=False))

    async with post(session, upstream, "m") as resp:
        assert resp.headers["Connection"] == "close"
        assert "Content-Length" not in resp.headers
        assert "Transfer-Encoding" not in resp.headers
        assert await read_until_error(resp) == (b"".join(DEFAULT_CHUNKS) + DONE, None)
    assert (await upstream.next_call()).cut_by_upstream


@pytest.mark.parametrize("finish", [True, False])
async def test_end_clean_without_done_ends_the_body_without_done(upstream, session, finish):
    upstream.script("m", end_clean_without_done(finish=finish))

    async with post(session, upstream, "m") as resp:
        body = await resp.read()

    events = [data_of(e + b"\n\n") for e in body.split(b"\n\n")[:-1]]
    assert DONE not in body
    assert [e["choices"][0]["finish_reason"] for e in events][-1] == ("stop" if finish else None)
    assert sum(e["choices"][0]["finish_reason"] is not None for e in events) == int(finish)


async def test_invalid_json_event_sits_between_valid_events(upstream, session):
    upstream.script("m", invalid_json_event())

    async with post(session, upstream, "m") as resp:
        body = await resp.read()

    first, *rest = DEFAULT_CHUNKS
    assert body == first + b"data: {not json\n\n" + b"".join(rest) + DONE


async def test_huge_event_data_is_exactly_size_bytes_of_valid_json(upstream, session):
    upstream.script("m", huge_event(300_000))

    async with post(session, upstream, "m") as resp:
        body = await resp.read()

    first, big, done, tail = body.split(b"\n\n")
    assert first + b"\n\n" == openai_chunks(["Hel"], finish_reason=None)[0]
    assert len(big) == len(b"data: ") + 300_000
    assert set(data_of(big + b"\n\n")["choices"][0]["delta"]["content"]) == {"x"}
    assert (done + b"\n\n", tail) == (DONE, b"")


def test_huge_event_rejects_a_size_below_the_envelope():
    with pytest.raises(ValueError, match="at least"):
        huge_event(10)


# --- plain answers --------------------------------------------------------------------------


async def test_status_sends_headers_and_openai_error_json(upstream, session):
    error = openai_error("too long", code="context_length_exceeded")
    upstream.script("429", status(429, headers={"Retry-After": "7"}))
    upstream.script("400", status(400, body=error))

    async with post(session, upstream, "429") as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "7"
        assert (await resp.json())["error"]["message"] == "fake upstream error 429"
    async with post(session, upstream, "400") as resp:
        assert resp.status == 400
        assert resp.headers["Content-Type"] == "application/json"
        assert await resp.json() == {
            "error": {
                "message": "too long",
                "type": "invalid_request_error",
                "param": None,
                "code": "context_length_exceeded",
            }
        }


async def test_status_sends_text_bodies_as_given(upstream, session):
    upstream.script("m", status(401, body="nope", content_type="text/plain"))

    async with post(session, upstream, "m") as resp:
        assert (resp.status, resp.content_type, await resp.text()) == (401, "text/plain", "nope")


async def test_html_sends_an_html_error_page(upstream, session):
    upstream.script("m", html(502))

    async with post(session, upstream, "m") as resp:
        assert (resp.status, resp.content_type) == (502, "text/html")
        assert "<h1>502 Bad Gateway</h1>" in await resp.text()


async def test_json_completion_is_a_chat_completion_with_usage_and_length(upstream, session):
    upstream.script("m", json_completion("Hi there", model="gpt-x"))

    async with post(session, upstream, "m") as resp:
        body = await resp.read()
        assert resp.headers["Content-Length"] == str(len(body))
    completion = json.loads(body)
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "gpt-x"
    assert completion["choices"][0]["message"]["content"] == "Hi there"
    assert completion["usage"]["total_tokens"] == 7


# --- cuts -----------------------------------------------------------------------------------


async def assert_cut_by_upstream(up: FakeUpstream) -> UpstreamCall:
    call = await up.next_call()
    await call.wait_finished()
    assert call.cut_by_upstream
    assert not call.closed_by_peer.is_set()
    return call


async def test_json_cut_raises_client_payload_error_after_the_partial_body(upstream, session):
    upstream.script("m", json_cut(10))

    async with post(session, upstream, "m") as resp:
        assert int(resp.headers["Content-Length"]) > 10
        received, error = await read_until_error(resp)

    assert len(received) == 10
    assert isinstance(error, aiohttp.ClientPayloadError)
    await assert_cut_by_upstream(upstream)


@pytest.mark.parametrize("cut", [cut_fin, cut_rst])
async def test_chunked_cut_raises_client_payload_error_after_the_sent_events(
    upstream, session, cut
):
    upstream.script("m", cut(2, chunked=True, half=HALF))

    async with post(session, upstream, "m") as resp:
        assert resp.headers["Transfer-Encoding"] == "chunked"
        received, error = await read_until_error(resp)

    assert received == b"".join(DEFAULT_CHUNKS[:2]) + HALF
    assert type(error) is aiohttp.ClientPayloadError
    await assert_cut_by_upstream(upstream)


@pytest.mark.parametrize("cut", [cut_fin, cut_rst])
async def test_close_delimited_cut_looks_like_a_clean_eof_to_aiohttp(upstream, session, cut):
    """Even the RST: aiohttp 3.14 ends a close-delimited body cleanly on ECONNRESET."""
    upstream.script("m", cut(1, chunked=False, half=HALF))

    async with post(session, upstream, "m") as resp:
        assert "Transfer-Encoding" not in resp.headers
        assert await read_until_error(resp) == (DEFAULT_CHUNKS[0] + HALF, None)

    await assert_cut_by_upstream(upstream)


@pytest.mark.parametrize("chunked", [True, False])
@pytest.mark.parametrize(("cut", "ending"), [(cut_fin, "eof"), (cut_rst, "reset")])
async def test_cut_ends_the_tcp_connection_with_fin_or_rst(upstream, cut, ending, chunked):
    upstream.script("m", cut(1, chunked=chunked))
    loop = asyncio.get_running_loop()
    body = b'{"model":"m"}'
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: fake\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with socket.create_connection(("127.0.0.1", upstream.port)) as sock:
        sock.setblocking(False)
        await loop.sock_sendall(sock, request)
        await (await upstream.next_call()).wait_finished()
        received, outcome = b"", "eof"
        try:
            while data := await loop.sock_recv(sock, 65536):
                received += data
        except ConnectionResetError:
            outcome = "reset"

    assert outcome == ending
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert received.endswith(DEFAULT_CHUNKS[0] + (b"\r\n" if chunked else b""))


# --- peer closes ----------------------------------------------------------------------------


async def test_cancelled_client_request_while_stalled_before_headers_is_seen_by_the_fake(
    upstream, session
):
    upstream.script("m", stall_before_headers())

    async def request() -> None:
        async with post(session, upstream, "m"):
            raise AssertionError("headers arrived")

    client = asyncio.create_task(request())
    call = await upstream.next_call()
    await call.started.wait()
    client.cancel()
    with pytest.raises(asyncio.CancelledError):
        await client

    await call.wait_closed_by_peer()
    await call.wait_finished()
    assert call.close_time is not None
    assert not call.cut_by_upstream


async def test_closed_response_while_stalled_before_first_event_is_seen_by_the_fake(
    upstream, session
):
    upstream.script("m", stall_before_first_event())

    async with post(session, upstream, "m") as resp:
        assert (resp.status, resp.headers["Content-Type"]) == (200, "text/event-stream")
        resp.close()

    call = await upstream.next_call()
    await call.wait_closed_by_peer()
    await call.wait_finished()


async def test_closed_response_while_stalled_after_n_chunks_is_seen_by_the_fake(upstream, session):
    upstream.script("m", stall_after(2))

    async with post(session, upstream, "m") as resp:
        expected = b"".join(DEFAULT_CHUNKS[:2])
        assert await resp.content.readexactly(len(expected)) == expected
        resp.close()

    await (await upstream.next_call()).wait_closed_by_peer()


async def test_closed_response_between_delayed_chunks_is_seen_by_the_fake(upstream, session):
    upstream.script("m", sse_stream(delay=3600))

    async with post(session, upstream, "m") as resp:
        assert await resp.content.readexactly(len(DEFAULT_CHUNKS[0])) == DEFAULT_CHUNKS[0]
        resp.close()

    await (await upstream.next_call()).wait_closed_by_peer()


async def test_wait_closed_by_peer_raises_assertion_error_when_the_peer_stays(upstream, session):
    async with post(session, upstream, "m") as resp:
        await resp.read()

    call = await upstream.next_call()
    with pytest.raises(AssertionError, match="did not close"):
        await call.wait_closed_by_peer(timeout=0.01)


async def test_closing_the_fake_cancels_stalled_handlers_without_blaming_the_peer():
    async with aiohttp.ClientSession() as session:
        upstream = FakeUpstream(default=stall_before_first_event())
        await upstream.start()
        async with post(session, upstream, "m") as resp:
            call = await upstream.next_call()
            await upstream.close()
            received, error = await read_until_error(resp)

    assert (received, type(error)) == (b"", aiohttp.ClientPayloadError)
    assert call.finished.is_set()
    assert not call.closed_by_peer.is_set()
    await upstream.close()
