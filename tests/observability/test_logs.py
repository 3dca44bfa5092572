"""Logs as an operator's pipeline reads them: one JSON object per line, from every source.

These tests configure logging for real (`configure_logging` into a buffer) rather than
capturing structlog events, because what is promised is the bytes of the log stream: a model
name with newlines or ANSI escapes cannot forge a line, aiohttp's and asyncio's own records are
JSON too, and a storm of disconnects is one line per request with no traceback.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import structlog

from gateway.observability import configure_logging
from gateway.observability.logs import MAX_VALUE_CHARS
from tests.conftest import StartGateway
from tests.observability.scrape import finished
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream

BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
FORGED = 'x\n{"event": "stream_finished", "outcome": "forged"}\x1b[2J\r\u2028'


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Logging configured as in a container (JSON), into a buffer; restored afterwards."""
    buffer = io.StringIO()
    configure_logging("info", "json", buffer)
    yield buffer
    logging.captureWarnings(False)
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    """Every line of the buffer, each of which must be one JSON object."""
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_json_lines_escape_hostile_values_and_cap_their_length(log_stream: io.StringIO) -> None:
    structlog.get_logger("t").info("stream_finished", model=FORGED, other="y" * 10_000)
    [line] = lines(log_stream)
    assert line["event"] == "stream_finished"
    assert line["model"] == FORGED  # escaped by the encoder, intact once decoded
    assert len(line["other"]) == MAX_VALUE_CHARS + 1  # the cap, and a marker


def test_console_lines_escape_control_characters() -> None:
    buffer = io.StringIO()
    configure_logging("info", "console", buffer)
    try:
        structlog.get_logger("t").info("stream_finished", model=FORGED)
    finally:
        structlog.reset_defaults()
    text = buffer.getvalue()
    assert text.count("\n") == 1
    assert text.endswith("\n")
    assert not {"\x1b", "\r", "\u2028"} & set(text)


def test_stdlib_records_from_libraries_are_json_lines_too(log_stream: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    logging.getLogger("aiohttp.access").info("below the library threshold")
    [line] = lines(log_stream)
    assert (line["logger"], line["level"]) == ("aiohttp.server", "error")
    assert "ValueError: boom" in line["exception"]


def test_level_from_settings_filters_our_lines(log_stream: io.StringIO) -> None:
    buffer = io.StringIO()
    configure_logging("warning", "json", buffer)
    structlog.get_logger("t").info("quiet")
    structlog.get_logger("t").warning("loud")
    assert [line["event"] for line in lines(buffer)] == ["loud"]


async def test_every_line_of_a_request_carries_its_request_id(
    log_stream: io.StringIO,
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
) -> None:
    upstream.script("m", fake.invalid_json_event())  # also logs a warning mid-request
    gw = await start_gateway(upstream, ("m",))
    headers = {"x-request-id": "req-42"}
    async with client.post(f"{gw.url}/v1/chat/completions", json=BODY, headers=headers) as r:
        assert r.headers["x-request-id"] == "req-42"
        await r.read()
    await finished(gw)
    records = lines(log_stream)
    assert {line["event"] for line in records} >= {"upstream_event_skipped", "stream_finished"}
    assert {line.get("request_id") for line in records} == {"req-42"}


async def test_hostile_model_name_cannot_forge_a_log_line(
    log_stream: io.StringIO, start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(None)
    body = {**BODY, "model": FORGED}
    async with client.post(f"{gw.url}/v1/chat/completions", json=body) as r:
        assert r.status == 404
    await finished(gw)
    [line] = lines(log_stream)
    assert (line["event"], line["outcome"], line["model"]) == (
        "stream_finished",
        "api_error",
        FORGED,
    )


@pytest.mark.timeout(60)
async def test_disconnect_storm_is_one_line_per_request_and_no_traceback(
    log_stream: io.StringIO, start_gateway: StartGateway, upstream: FakeUpstream
) -> None:
    clients = 200
    upstream.script("m", fake.stall_after(1))
    gw = await start_gateway(upstream, ("m",))

    async def leave_mid_stream(session: aiohttp.ClientSession) -> None:
        async with session.post(f"{gw.url}/v1/chat/completions", json=BODY) as r:
            await r.content.readuntil(b"\n\n")

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(leave_mid_stream(session) for _ in range(clients)))
    await finished(gw, clients)
    for call in upstream.requests:
        await call.wait_closed_by_peer()
    records = lines(log_stream)
    assert len(records) == clients, [r for r in records if r["event"] != "stream_finished"]
    assert {(r["event"], r["outcome"], r["phase"]) for r in records} == {
        ("stream_finished", "client_disconnected", "streaming")
    }
    assert len({r["request_id"] for r in records}) == clients
    assert "Traceback" not in log_stream.getvalue()


def test_python_warnings_are_json_lines_too(log_stream: io.StringIO) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("unclosed thing", ResourceWarning, stacklevel=1)
    [line] = lines(log_stream)
    assert (line["logger"], line["level"]) == ("py.warnings", "warning")
    assert "ResourceWarning: unclosed thing" in line["event"]
