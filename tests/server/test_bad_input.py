"""Hostile request bodies: each is a 400 (or 413) in the endpoint's error shape, never a 500,
never a traceback in the logs, and never reaches the upstream.

Hand-picked cases first (JSON bombs, numbers Python or JSON cannot hold, unpaired surrogates,
broken chunked framing and compression), both endpoints; then a fuzz test: random bytes,
random JSON-ish documents and mutations of a valid body, whatever comes out, the gateway answers
400, 404 or 413 with the dialect's error JSON and calls no upstream (the one routed model name
is one no generator produces, so even a well-formed body is at most a 404).
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.observability import configure_logging
from gateway.server.request_body import parse_json_object
from tests.conftest import RunningGateway, StartGateway
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream
from tests.support.raw_http import exchange, head, parse_responses

MODEL = "routed-7f3a9c1e"
MESSAGES = [{"role": "user", "content": "hi"}]
PATHS = ["/v1/chat/completions", "/v1/messages"]


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging("debug", "json", buffer)
    yield buffer
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)


@pytest.fixture
async def gateway(upstream: FakeUpstream, start_gateway: StartGateway) -> RunningGateway:
    gw = await start_gateway(upstream, models=(MODEL,), limits={"max_request_bytes": 1024 * 1024})
    upstream.script(MODEL, fake.json_completion())
    return gw


@pytest.fixture
async def http(gateway: RunningGateway) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=gateway.url) as session:
        yield session


def assert_dialect_error(path: str, body: Any) -> dict[str, Any]:
    """The error object of `body`, checked to be in `path`'s dialect."""
    if path == "/v1/messages":
        assert set(body) == {"type", "error"}
        assert body["type"] == "error"
        assert set(body["error"]) == {"type", "message"}
        return dict(body["error"])
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code", "param", "category"}
    return dict(body["error"])


async def post(
    http: aiohttp.ClientSession, path: str, data: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with http.post(
        path, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    ) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


def valid(path: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, **extra}
    if path == "/v1/messages":
        body.setdefault("max_tokens", 16)
    return body


def with_raw(path: str, raw_field: bytes) -> bytes:
    """A valid body with `"x": <raw_field>` spliced in as raw JSON text."""
    return json.dumps(valid(path)).encode()[:-1] + b', "x": ' + raw_field + b"}"


# --- hand-picked -------------------------------------------------------------------------------

HOSTILE: dict[str, Any] = {
    "deep-array": lambda p: with_raw(p, b"[" * 100_000 + b"]" * 100_000),
    "deep-object": lambda p: with_raw(p, b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
    "deep-unclosed": lambda p: with_raw(p, b"[" * 500_000),
    "huge-integer": lambda p: with_raw(p, b"9" * 100_000),
    "nan": lambda p: with_raw(p, b"NaN"),
    "infinity": lambda p: with_raw(p, b"-Infinity"),
    "float-overflow": lambda p: with_raw(p, b"1e999"),
    "lone-surrogate": lambda p: with_raw(p, b'"\\ud800 alone"'),
    "reversed-surrogates": lambda p: with_raw(p, b'"\\udc00\\ud800"'),
    "invalid-utf8": lambda p: with_raw(p, b'"\xff\xfe"'),
    "utf8-encoded-surrogate": lambda p: with_raw(p, b'"\xed\xa0\x80"'),
    "overlong-utf8": lambda p: with_raw(p, b'"\xc0\xaf"'),
    "utf16-body": lambda p: json.dumps(valid(p)).encode("utf-16"),
    "nul-bytes": lambda p: b"\x00" * 64,
    "model-null": lambda p: json.dumps(valid(p, model=None)).encode(),
    "model-list": lambda p: json.dumps(valid(p, model=[MODEL])).encode(),
    "messages-object": lambda p: json.dumps(valid(p, messages={"a": 1})).encode(),
    "stream-null": lambda p: json.dumps(valid(p, stream=None)).encode(),
    "trailing-garbage": lambda p: json.dumps(valid(p)).encode() + b" x",
    "two-documents": lambda p: json.dumps(valid(p)).encode() * 2,
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_body_is_400_in_the_dialect_without_traceback(
    upstream: FakeUpstream,
    http: aiohttp.ClientSession,
    log_stream: io.StringIO,
    path: str,
    case: str,
) -> None:
    status, body = await post(http, path, HOSTILE[case](path))

    assert status == 400
    error = assert_dialect_error(path, body)
    assert error["type"] == "invalid_request_error"  # both APIs name it so
    assert upstream.requests == []
    assert "Traceback" not in log_stream.getvalue()


async def test_paired_surrogate_escapes_are_relayed(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    path = "/v1/chat/completions"
    upstream.script(MODEL, fake.json_completion())
    raw = with_raw(path, b'"\\ud83d\\ude00"')

    status, _ = await post(http, path, raw)

    assert status == 200
    [call] = upstream.requests
    assert call.body["x"] == "\U0001f600"


@pytest.mark.parametrize("depth", range(800, 1100, 20))
async def test_nesting_near_the_parsers_limit_is_relayed_or_400_never_500(
    upstream: FakeUpstream, http: aiohttp.ClientSession, depth: int
) -> None:
    path = "/v1/chat/completions"
    status, body = await post(http, path, with_raw(path, b"[" * depth + b"]" * depth))

    assert status in (200, 400), body
    if status == 400:
        assert "nested too deeply" in assert_dialect_error(path, body)["message"]


def port_of(gw: RunningGateway) -> int:
    return int(gw.url.rsplit(":", 1)[1])


async def test_broken_chunked_framing_with_the_head_is_400_json(
    upstream: FakeUpstream, gateway: RunningGateway
) -> None:
    request = head("POST", PATHS[0], {"Transfer-Encoding": "chunked"}) + b"2\r\n{}\r\nzz\r\n"

    answers = parse_responses(await exchange(port_of(gateway), request))

    assert answers[0].status == 400  # the parser failed on the packet: no request was made
    assert answers[0].json()["error"]["code"] == "invalid_request"
    assert upstream.requests == []


@pytest.mark.parametrize("path", PATHS)
async def test_broken_chunked_framing_while_the_body_is_read_ends_at_the_body_deadline(
    upstream: FakeUpstream, start_gateway: StartGateway, path: str
) -> None:
    # aiohttp's parser does not fail a body read it already started when the framing breaks
    # (the read would wait for ever): the body deadline answers it, in the dialect.
    gw = await start_gateway(upstream, models=(MODEL,), limits={"body_timeout": 0.5})
    fields = {
        "Content-Type": "application/json",
        "Transfer-Encoding": "chunked",
        "Expect": "100-continue",
    }
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw))
    try:
        writer.write(head("POST", path, fields))
        async with asyncio.timeout(10):
            # The handler asks for the body: the broken framing reaches its read.
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"2\r\n{}\r\nzz\r\n")
            answers = parse_responses(await reader.read())
    finally:
        writer.close()

    assert answers[0].status == 408
    assert_dialect_error(path, answers[0].json())
    assert upstream.requests == []


@pytest.mark.parametrize("path", PATHS)
async def test_corrupt_compressed_body_is_400(
    upstream: FakeUpstream, http: aiohttp.ClientSession, path: str
) -> None:
    corrupt = gzip.compress(json.dumps(valid(path)).encode())[:-12] + b"\x00" * 12

    status, body = await post(http, path, corrupt, {"Content-Encoding": "gzip"})

    assert status == 400
    assert_dialect_error(path, body)
    assert upstream.requests == []


async def test_compression_bomb_is_413_once_it_inflates_past_the_limit(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    path = "/v1/chat/completions"
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip
    bomb = packer.compress(b" " * (64 * 1024 * 1024)) + packer.flush()  # 64 MiB of spaces
    assert len(bomb) < 1024 * 1024

    status, body = await post(http, path, bomb, {"Content-Encoding": "gzip"})

    assert status == 413
    assert assert_dialect_error(path, body)["code"] == "request_too_large"
    assert upstream.requests == []


@pytest.mark.parametrize(
    "raw",
    [b'{"a": NaN}', b'{"a": 1e400}', b'{"a": "\\udfff"}', b'{"a": ' + b"1" * 5000 + b"}"],
)
def test_parse_json_object_refuses_what_cannot_be_forwarded_as_json(raw: bytes) -> None:
    from gateway.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        parse_json_object(raw)


def test_parse_json_object_tolerates_a_bom() -> None:
    assert parse_json_object(b'\xef\xbb\xbf{"a": 1.5}') == {"a": 1.5}


# --- fuzz --------------------------------------------------------------------------------------

KEYS = st.sampled_from(["model", "messages", "stream", "max_tokens", "role", "content", "x"])
#: The code points known to be trouble, often (unpaired surrogates: `json.dumps` writes them
#: as `\\udXXX` escapes), and any other.
CHARS = st.sampled_from(
    ["\ud800", "\udfff", "\U0001f600", "\x00", "\u2028", "\\", '"']
) | st.characters(exclude_categories=())
TEXT = st.lists(CHARS, max_size=30).map("".join)  # (`st.text` would drop the surrogates)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
    | st.just(MODEL)
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)
TOKENS = st.sampled_from([b"[", b"{", b'"', b"\\", b"\\u", b"\\ud800", b"\xff", b"NaN", b"1e999"])


def _mutate(data: bytes, position: int, insert: bytes, delete: int) -> bytes:
    position = min(position, len(data))
    return data[:position] + insert + data[position + delete :]


MUTATED = st.builds(
    _mutate,
    st.sampled_from([json.dumps(valid(p, stream=False)).encode() for p in PATHS]),
    st.integers(0, 120),
    st.binary(max_size=6) | TOKENS,
    st.integers(0, 6),
)
#: Well-formed requests for the routed model, with any text in them.
WELL_FORMED = st.builds(
    lambda path, content, stream: json.dumps(
        valid(path, messages=[{"role": "user", "content": content}], stream=stream)
    ).encode(),
    st.sampled_from(PATHS),
    TEXT,
    st.booleans(),
)
BODIES = (
    st.binary(max_size=400)
    | JSONISH.map(lambda value: json.dumps(value).encode())
    | MUTATED
    | WELL_FORMED
)


def _json_reading(raw: bytes) -> Any:
    """What the strict stdlib path makes of `raw`: the object, or the refusal's class."""
    from gateway.errors import InvalidRequest
    from gateway.server.request_body import _strict_parse

    try:
        return _strict_parse(raw)
    except InvalidRequest:
        return InvalidRequest


DEEP = st.integers(240, 1100).map(lambda depth: b'{"a": ' + b"[" * depth + b"]" * depth + b"}")


@settings(max_examples=500, deadline=None)
@given(raw=BODIES | DEEP | st.integers(-(2**80), 2**80).map(lambda n: b'{"n": %d}' % n))
def test_parse_json_object_reads_every_body_as_the_json_path_does(raw: bytes) -> None:
    """orjson's fast path never accepts, refuses or reads a body otherwise than `json`."""
    from gateway.errors import InvalidRequest

    try:
        got: Any = parse_json_object(raw)
    except InvalidRequest:
        got = InvalidRequest
    expected = _json_reading(raw)
    assert got == expected
    if isinstance(got, dict):  # and the same types: 1 is not 1.0
        assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


def answer_as_asked() -> fake.Behaviour:
    """A JSON completion, or a stream if the request asked for one."""
    stream, complete = fake.sse_stream(), fake.json_completion()

    async def behave(request: web.Request, call: fake.UpstreamCall) -> web.StreamResponse:
        return await (stream if call.body.get("stream") is True else complete)(request, call)

    return behave


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=BODIES, path=st.sampled_from(PATHS))
async def test_fuzzed_body_is_relayed_or_a_4xx_in_the_dialect_and_never_a_5xx(
    upstream: FakeUpstream, http: aiohttp.ClientSession, body: bytes, path: str
) -> None:
    upstream.script(MODEL, answer_as_asked())
    before = len(upstream.requests)

    async with http.post(path, data=body, headers={"Content-Type": "application/json"}) as got:
        raw = await got.read()

    if got.status == 200:  # a well-formed body for the routed model: relayed once
        assert len(upstream.requests) == before + 1
        return
    assert got.status in (400, 404, 413), (got.status, raw)
    assert got.content_type == "application/json"
    assert_dialect_error(path, json.loads(raw))
    assert len(upstream.requests) == before
