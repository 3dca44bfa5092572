"""The API endpoints the gateway relays, one `Endpoint` value each.

An endpoint is everything the one relaying handler needs to know about an API family: where it
is served, its dialect (how answers are judged and errors written), the `endpoint` label of its
metrics and log lines, where the call goes on the upstream, how the client's request is read at
the edge and which of the client's headers may go upstream. Adding an API is one value here and
one route in `gateway.server.app`; nothing else branches on it.

`dialect_for_path` says in which dialect an error is written for a request that never reached
a handler - aiohttp's own rejections (unknown path, wrong method), the drain refusal - so that an
`anthropic` SDK on `/v1/messages` gets Anthropic's error shape there too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from gateway.server.chat_request import read_chat_request
from gateway.server.messages_request import forwarded_anthropic_headers, read_messages_request
from gateway.streaming import AnthropicDialect, Dialect, OpenAIDialect

__all__ = [
    "CHAT_COMPLETIONS",
    "ENDPOINTS",
    "MESSAGES",
    "Endpoint",
    "dialect_for_path",
    "endpoint_at",
]


class EdgeFields(Protocol):
    """What the handler reads from any endpoint's validated request."""

    model: str
    stream: bool


RequestReader = Callable[[web.Request, int], Awaitable[tuple[EdgeFields, dict[str, Any]]]]


def _no_headers(request: web.Request) -> dict[str, str]:
    return {}


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # the `endpoint` label of metrics and logs (a closed set)
    path: str  # where the gateway serves it
    dialect: Dialect
    upstream_path: str  # relative to the upstream's base URL
    read: RequestReader  # (request, max body bytes) -> (validated fields, the JSON body)
    forwarded_headers: Callable[[web.Request], dict[str, str]] = _no_headers


CHAT_COMPLETIONS = Endpoint(
    name="chat_completions",
    path="/v1/chat/completions",
    dialect=OpenAIDialect(),
    upstream_path="/chat/completions",
    read=read_chat_request,
)
MESSAGES = Endpoint(
    name="messages",
    path="/v1/messages",
    dialect=AnthropicDialect(),
    upstream_path="/v1/messages",
    read=read_messages_request,
    forwarded_headers=forwarded_anthropic_headers,
)


#: Every relayed endpoint.
ENDPOINTS = (CHAT_COMPLETIONS, MESSAGES)


def endpoint_at(path: str) -> Endpoint | None:
    """The relayed endpoint served at `path`, if any."""
    for endpoint in ENDPOINTS:
        if endpoint.path == path:
            return endpoint
    return None


def dialect_for_path(path: str) -> Dialect:
    """The dialect of errors answered on `path`: Anthropic's under `/v1/messages`, else OpenAI's."""
    if path == MESSAGES.path or path.startswith(MESSAGES.path + "/"):
        return MESSAGES.dialect
    return CHAT_COMPLETIONS.dialect
