"""The client's chat request at the edge: the body (read by `gateway.server.request_body`:
size, deadline, strict JSON), the fields the gateway relies on, and the per-request deadline
headers. Everything here raises `RequestError`s (400/408/413) before anything is sent upstream;
the rest of the body is forwarded as the client wrote it.

`read_json_object` and `validated` are shared with the other endpoints' requests
(`gateway.server.messages_request`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from gateway.errors import InvalidRequest
from gateway.server.request_body import read_json_object

__all__ = [
    "ChatRequest",
    "read_chat_request",
    "read_json_object",
    "timeout_overrides",
    "validated",
]

Fields = TypeVar("Fields", bound=BaseModel)

#: Per-request deadline headers (contract section 6) -> `Timeouts` field names.
TIMEOUT_HEADERS = {
    "x-gateway-connect-timeout": "connect",
    "x-gateway-first-byte-timeout": "first_byte",
    "x-gateway-idle-timeout": "idle",
    "x-gateway-total-timeout": "total",
}


class ChatRequest(BaseModel):
    """The fields of a Chat Completions request that the gateway itself reads."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    messages: list[Any] = Field(min_length=1)
    stream: StrictBool = False


async def read_chat_request(
    request: web.Request, max_bytes: int
) -> tuple[ChatRequest, dict[str, Any]]:
    """The validated request and the raw JSON object it came from."""
    body = await read_json_object(request, max_bytes)
    return validated(ChatRequest, body), body


def validated(fields: type[Fields], body: dict[str, Any]) -> Fields:
    """`body` validated as `fields`; the first problem, with its place, becomes a 400."""
    try:
        return fields.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidRequest(f"invalid request: {where}: {first['msg']}") from None


def timeout_overrides(headers: Mapping[str, str]) -> dict[str, float]:
    """The per-request limits a client asked for (clamped later by the route)."""
    overrides: dict[str, float] = {}
    for header, field in TIMEOUT_HEADERS.items():
        value = headers.get(header)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not (seconds > 0 and math.isfinite(seconds)):
            raise InvalidRequest(f"header {header} must be a positive number of seconds")
        overrides[field] = seconds
    return overrides
