"""Reading a client's request body at the edge: its size, its deadline, and strict JSON.

`read_json_object(request, max_bytes)` is the one way an endpoint reads its body:

- a `Content-Length` above `max_bytes` is a 413 before a byte of the body is read, and a
  chunked body is cut off with a 413 as soon as it passes `max_bytes`;
- `Expect: 100-continue` is answered only here, once the request passed every check that its
  head allows (key, capacity, size): a client that waits for it never sends a body the gateway
  refuses. The routes install `defer_continue` so that aiohttp does not answer it earlier;
- the body must arrive within `limits.body_timeout` seconds, else 408; the connection is then
  closed at once rather than drained (aiohttp drains an unread body for `lingering_time`
  before closing; a payload that raises `TimeoutError` ends that at once);
- it must be UTF-8 (RFC 8259; a BOM is tolerated) holding one JSON object, in strict JSON: no
  `NaN`/`Infinity`, no number that overflows to infinity, no unpaired UTF-16 surrogate, no
  nesting deeper than Python's parser goes (`RecursionError`), no integer longer than Python
  converts. The body is forwarded re-encoded, so anything that could not be written back as
  valid UTF-8 JSON is refused here as a 400, never found later as a 500.

orjson reads most bodies (several times faster); the stdlib `json` path is the judge of
everything else. orjson refuses what the strict path refuses (`NaN`, overflowing numbers,
unpaired surrogates, invalid UTF-8) and a few things it accepts (a BOM), but it silently reads
an integer beyond 64 bits as a float and nests deeper than `json` goes: bodies with a run of 19
digits or more than `_FAST_MAX_NESTING` brackets are left to `json`, as is whatever orjson
refuses, so every body reads as it does with `json` alone.

Every failure is a `RequestError` (400, 408, 413): nothing has been sent upstream yet.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any, NoReturn

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.errors import InvalidRequest, RequestTimeout, RequestTooLarge
from gateway.server.app_state import SETTINGS

__all__ = ["defer_continue", "parse_json_object", "read_json_object"]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: A `\u` escape of a UTF-16 surrogate (paired or not): only bodies holding one need the slow
#: check for an unpaired one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_TOO_DEEP = "the request body is nested too deeply"
#: Bodies orjson may read: at most this many brackets (so nested at most this deep, which
#: orjson and `json` both read and write back), and no run of digits that could be an integer
#: beyond 64 bits (orjson would read it as a float).
_FAST_MAX_NESTING = 254
_LONG_DIGITS = re.compile(rb"\d{19}")


async def defer_continue(request: web.Request) -> None:
    """The routes' `expect_handler`: answers nothing, so that `100 Continue` is sent by
    `read_json_object`, once the gateway wants the body. Other expectations are ignored
    (RFC 9110 section 10.1.1 allows it): the request is served as if they were not there."""


async def read_json_object(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """The request's body: at most `max_bytes` (else 413), received in time (else 408), one
    strict JSON object (else 400)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise RequestTooLarge(f"the request body exceeds {max_bytes} bytes")
    timeout = request.app[SETTINGS].limits.body_timeout
    await _send_continue(request)
    try:
        if request.content.is_eof():
            # The whole body came with the head: reading it cannot wait, no timer is needed.
            raw = await _receive(request, max_bytes)
        else:
            async with asyncio.timeout(timeout):
                raw = await _receive(request, max_bytes)
    except TimeoutError:
        # Closes the connection once the 408 is written, instead of draining the rest.
        request.content.set_exception(TimeoutError())
        raise RequestTimeout(f"the request body was not received within {timeout:g}s") from None
    except (web.RequestPayloadError, HttpProcessingError):
        raise InvalidRequest("the request body is malformed (its framing or encoding)") from None
    return parse_json_object(raw)


async def _receive(request: web.Request, max_bytes: int) -> bytearray:
    """The whole body, at most `max_bytes` (else 413).

    Not `request.read()`: that keeps its copy of the body on the request for the request's
    whole life, which for a stream is as long as the answer streams.
    """
    body = bytearray()
    content = request.content
    while chunk := await content.readany():
        body += chunk
        if len(body) > max_bytes:
            raise RequestTooLarge(f"the request body exceeds {max_bytes} bytes")
    return body


async def _send_continue(request: web.Request) -> None:
    if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(_CONTINUE)
        request.writer.output_size = 0  # the real response has not started (as aiohttp does)


def parse_json_object(raw: bytes | bytearray) -> dict[str, Any]:
    """`raw` as one strict JSON object; any problem is an `InvalidRequest`."""
    body = _fast_parse(raw)
    return body if body is not None else _strict_parse(raw)


def _fast_parse(raw: bytes | bytearray) -> dict[str, Any] | None:
    """orjson's reading of `raw` when it is sure to be `json`'s; None: ask `_strict_parse`."""
    if raw.count(b"[") + raw.count(b"{") > _FAST_MAX_NESTING or _LONG_DIGITS.search(raw):
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _strict_parse(raw: bytes | bytearray) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise InvalidRequest("the request body is not valid UTF-8") from None
    try:
        body = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except ValueError:
        # Not JSON, NaN/Infinity, an overflowing float, an integer too long to convert.
        raise InvalidRequest("the request body is not valid JSON") from None
    except RecursionError:
        raise InvalidRequest(_TOO_DEEP) from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    if _SURROGATE_ESCAPE.search(text):
        _check_encodable(body)
    return body


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _check_encodable(body: dict[str, Any]) -> None:
    """Raise unless `body` can be written back as UTF-8 JSON (no unpaired surrogate in it)."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest("the request body holds an unpaired UTF-16 surrogate") from None
    except RecursionError:
        raise InvalidRequest(_TOO_DEEP) from None
