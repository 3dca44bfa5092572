"""The API families the gateway serves, one package each, and their one registry (`APIS`).

Each package (`openai_chat`, `anthropic_messages`) builds one `Api` value holding everything
the gateway knows about its API: request fields, wire dialect (events, errors, usage), splice,
mock wire, forwarded headers. Adding an API is one package and one entry in `APIS`; the server
serves every entry, the mock speaks every entry, and nothing else branches on an API.

Dependencies point one way: `gateway.apis` builds on `gateway.streaming` (the pure core) and is
used by the providers, the router and the server.
"""

from gateway.apis.anthropic_messages import ANTHROPIC_MESSAGES
from gateway.apis.base import Api, Headers
from gateway.apis.mock_wire import MockWire
from gateway.apis.openai_chat import OPENAI_CHAT
from gateway.apis.openai_responses import OPENAI_RESPONSES
from gateway.apis.request import EdgeRequest, validated
from gateway.apis.splice import Splice
from gateway.streaming import Dialect

__all__ = [
    "ANTHROPIC_MESSAGES",
    "APIS",
    "OPENAI_CHAT",
    "OPENAI_RESPONSES",
    "Api",
    "EdgeRequest",
    "Headers",
    "MockWire",
    "Splice",
    "api_at",
    "errors_dialect",
    "validated",
]

#: Every API the gateway serves, in the order they are routed and listed.
APIS: tuple[Api, ...] = (OPENAI_CHAT, OPENAI_RESPONSES, ANTHROPIC_MESSAGES)


def api_at(path: str) -> Api | None:
    """The API served at exactly `path`, if any."""
    for api in APIS:
        if api.path == path:
            return api
    return None


def errors_dialect(path: str) -> Dialect:
    """The dialect an error on `path` is written in: the API that serves `path` or a path under
    it (Anthropic's under `/v1/messages`), else OpenAI's - also for a request that never reached
    a handler (an unknown path, a wrong method, the drain refusal)."""
    for api in APIS:
        if api.serves(path):
            return api.dialect
    return OPENAI_CHAT.dialect
