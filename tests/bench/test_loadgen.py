"""The load generator reads what the proxies send, however the bytes are split, on every API.

Its figures are only as good as its parser: a response fed to the client protocol in two
pieces, cut at every byte offset, must give the same events, latencies and outcome, on chat
(`data: [DONE]` ends it) and on Responses (`response.completed` ends it, and is counted), and
the same events and outcome on Anthropic's Messages (`message_stop` ends it, and is counted),
the stream a translating route reads from the upstream.
"""

from __future__ import annotations

import asyncio

import pytest

from bench.loadgen import EventLog, _ClientProtocol
from bench.protocol import APIS, CHAT, MESSAGES, RESPONSES, WireApi

STAMP = 10**15


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True


def _events(count: int, api: WireApi = CHAT) -> list[bytes]:
    """The events of a stream of `count`, stamped STAMP + index (the last STAMP + count)."""
    stamps = [STAMP + i for i in range(count - 1)] + [STAMP + count]
    return [api.event(index, count, stamp) for index, stamp in enumerate(stamps)]


def _chunked(parts: list[bytes]) -> bytes:
    framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    return head + b"\r\n" + framed + b"0\r\n\r\n"


async def _read(
    response: bytes, cut: int, expect: int, api: WireApi = CHAT, *, log: bool = True
) -> tuple[object, EventLog, bool]:
    protocol = _ClientProtocol()
    transport = _Transport()
    protocol.connection_made(transport)
    events = EventLog()
    future = protocol.begin(
        b"GET / HTTP/1.1\r\n\r\n", expect, events if log else None, 0, None, api
    )
    protocol.data_received(response[:cut])
    protocol.data_received(response[cut:])
    result = future.result()
    return result, events, protocol.reusable


@pytest.mark.parametrize("api", list(APIS))
@pytest.mark.parametrize("framing", ["one event a chunk", "all events in one chunk"])
async def test_chunked_stream_gives_the_same_result_whatever_the_split(
    framing: str, api: str
) -> None:
    events = _events(4, APIS[api])
    response = _chunked(events if framing == "one event a chunk" else [b"".join(events)])
    for cut in range(len(response) + 1):
        result, log, reusable = await _read(response, cut, expect=4, api=APIS[api])
        assert result.error is None, (cut, result.error)
        assert result.events == 4
        assert result.done_ns is not None
        assert list(log.sent_ns) == [STAMP, STAMP + 1, STAMP + 2, STAMP + 4]
        assert len(log.latency_ns) == 4
        assert reusable


async def test_stream_without_done_is_an_error() -> None:
    events = _events(3)
    final = events[-1].removesuffix(b"data: [DONE]\n\n")  # the stop chunk, without [DONE]
    assert final != events[-1]
    response = _chunked([*events[:-1], final])
    result, _, reusable = await _read(response, 10, expect=3)
    assert result.error == "no [DONE] after 3 events"
    assert not reusable


async def test_responses_stream_without_completed_is_an_error() -> None:
    response = _chunked(_events(3, RESPONSES)[:-1])
    result, _, reusable = await _read(response, 10, expect=3, api=RESPONSES)
    assert result.error == "no response.completed after 2 events"
    assert not reusable


async def test_responses_error_event_is_an_error() -> None:
    error = b'event: error\ndata: {"type":"error","sequence_number":2,"message":"cut"}\n\n'
    response = _chunked([*_events(4, RESPONSES)[:2], error])
    result, _, reusable = await _read(response, 10, expect=4, api=RESPONSES)
    assert result.error is not None
    assert result.error.startswith("unexpected event b'event: error")
    assert not reusable


async def test_error_status_is_an_error_with_its_body() -> None:
    body = b'{"error": {"type": "network"}}'
    response = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    result, _, _ = await _read(response, 5, expect=3)
    assert result.error is not None
    assert result.error.startswith("HTTP 502")
    assert "network" in result.error


async def test_messages_stream_gives_the_same_result_whatever_the_split() -> None:
    events = _events(7, MESSAGES)
    kinds = [event.split(b"\n", 1)[0] for event in events]
    assert kinds == [
        b"event: message_start",
        b"event: content_block_start",
        b"event: content_block_delta",
        b"event: content_block_delta",
        b"event: content_block_stop",
        b"event: message_delta",
        b"event: message_stop",
    ]
    assert [MESSAGES.stamp(event) for event in (events[0], events[2], events[3])] == [
        STAMP,
        STAMP + 2,
        STAMP + 3,
    ]
    response = _chunked(events)
    for cut in range(len(response) + 1):
        result, _, reusable = await _read(response, cut, expect=7, api=MESSAGES, log=False)
        assert result.error is None, (cut, result.error)
        assert result.events == 7
        assert result.done_ns is not None
        assert reusable


async def test_messages_stream_without_message_stop_is_an_error() -> None:
    response = _chunked(_events(7, MESSAGES)[:-1])
    result, _, reusable = await _read(response, 10, expect=7, api=MESSAGES, log=False)
    assert result.error == "no message_stop after 6 events"
    assert not reusable


def test_a_chat_client_counts_a_role_chunk_a_chunk_per_text_delta_and_the_finish_chunk() -> None:
    assert MESSAGES.reaches(CHAT)
    assert not MESSAGES.reaches(RESPONSES)
    for total in (4, 5, 6, 2000):
        events = _events(total, MESSAGES)
        text = sum(event.startswith(b"event: content_block_delta") for event in events)
        assert MESSAGES.relayed_as(CHAT, total) == text + 2
    with pytest.raises(ValueError, match="does not translate messages for responses"):
        MESSAGES.relayed_as(RESPONSES, 10)
