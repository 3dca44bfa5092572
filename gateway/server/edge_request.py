"""The client's request at the edge, for any API: the body (read by
`gateway.server.request_body`: size, deadline, strict JSON), validated against the API's request
fields (`Api.request`), and the per-request deadline headers. Everything here raises
`RequestError`s (400/408/413) before anything is sent upstream; the rest of the body is
forwarded as the client wrote it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.apis import Api, EdgeRequest, validated
from gateway.errors import InvalidRequest, UnsupportedMediaType
from gateway.server.request_body import read_json_object

__all__ = ["TIMEOUT_HEADERS", "read_api_request", "timeout_overrides"]

#: Per-request deadline headers (contract section 6) -> `Timeouts` field names.
TIMEOUT_HEADERS = {
    "x-gateway-connect-timeout": "connect",
    "x-gateway-first-byte-timeout": "first_byte",
    "x-gateway-first-token-timeout": "first_token",
    "x-gateway-idle-timeout": "idle",
    "x-gateway-total-timeout": "total",
}


async def read_api_request(
    request: web.Request, api: Api, max_bytes: int
) -> tuple[EdgeRequest, dict[str, Any]]:
    """The validated fields of `api`'s request and the raw JSON object they came from; a body
    that is not `application/json` (its parameters, such as `charset`, allowed) is refused
    unread."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"the request body must be application/json, not {_shown(request.content_type)}"
        )
    body = await read_json_object(request, max_bytes)
    return validated(api.request, body), body


def _shown(content_type: str, limit: int = 64) -> str:
    """A client's content type made safe to echo (printable, capped; JSON-encoded later)."""
    shown = "".join(ch if ch.isprintable() else "?" for ch in content_type[:limit])
    return repr(shown + ("..." if len(content_type) > limit else ""))


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
