"""The client's Anthropic Messages request at the edge (`POST /v1/messages`).

The body is read and checked like a chat request (`gateway.server.chat_request`): size, JSON,
and the fields the gateway relies on or Anthropic requires (`model`, non-empty `messages`,
`max_tokens`, optional `stream`); everything else is forwarded as the client wrote it.

Of the client's headers only Anthropic's protocol headers go upstream, and only when they are
sane: `anthropic-version` (a date; otherwise the upstream's configured version is sent) and
`anthropic-beta` (comma-separated feature names). The client's `x-api-key` and
`Authorization` never do: the provider authenticates with the gateway's own key.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from gateway.server.chat_request import read_json_object, validated

__all__ = ["MessagesRequest", "forwarded_anthropic_headers", "read_messages_request"]

_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")
_BETA = re.compile(r"[A-Za-z0-9._\-]+(?: *, *[A-Za-z0-9._\-]+)*")
_MAX_BETA = 1024


class MessagesRequest(BaseModel):
    """The fields of a Messages request that the gateway itself reads or Anthropic requires."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    messages: list[Any] = Field(min_length=1)
    max_tokens: StrictInt = Field(ge=1)
    stream: StrictBool = False


async def read_messages_request(
    request: web.Request, max_bytes: int
) -> tuple[MessagesRequest, dict[str, Any]]:
    """The validated request and the raw JSON object it came from."""
    body = await read_json_object(request, max_bytes)
    return validated(MessagesRequest, body), body


def forwarded_anthropic_headers(request: web.Request) -> dict[str, str]:
    """The client's sane `anthropic-version` and `anthropic-beta`, to pass upstream."""
    headers: dict[str, str] = {}
    version = request.headers.get("anthropic-version", "").strip()
    if _VERSION.fullmatch(version):
        headers["anthropic-version"] = version
    betas = ",".join(value.strip() for value in request.headers.getall("anthropic-beta", []))
    if betas and len(betas) <= _MAX_BETA and _BETA.fullmatch(betas):
        headers["anthropic-beta"] = betas
    return headers
