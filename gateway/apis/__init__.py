"""The API families the gateway serves, one package each, and their one registry (`APIS`).

Each package (`openai_chat`, `anthropic_messages`) builds one `Api` value holding everything
the gateway knows about its API: request fields, wire dialect (events, errors, usage), splice,
mock wire, forwarded headers. Adding an API is one package and one entry in `APIS`; the server
serves every entry, the mock speaks every entry, and nothing else branches on an API.

Dependencies point one way: `gateway.apis` builds on `gateway.streaming` (the pure core) and is
used by the providers, the router and the server.
"""

from gateway.apis.anthropic_count_tokens import ANTHROPIC_COUNT_TOKENS
from gateway.apis.anthropic_messages import ANTHROPIC_MESSAGES
from gateway.apis.base import Api, Headers
from gateway.apis.mock_wire import MockWire
from gateway.apis.openai_chat import OPENAI_CHAT
from gateway.apis.openai_completions import OPENAI_COMPLETIONS
from gateway.apis.openai_embeddings import OPENAI_EMBEDDINGS
from gateway.apis.openai_responses import FOLLOW_UPS, OPENAI_RESPONSES, FollowUp
from gateway.apis.request import EdgeRequest, validated
from gateway.apis.splice import Splice
from gateway.streaming import Dialect

__all__ = [
    "ANTHROPIC_COUNT_TOKENS",
    "ANTHROPIC_MESSAGES",
    "APIS",
    "API_ROOTS",
    "OPENAI_CHAT",
    "OPENAI_COMPLETIONS",
    "OPENAI_EMBEDDINGS",
    "OPENAI_RESPONSES",
    "RESPONSES_FOLLOW_UPS",
    "Api",
    "EdgeRequest",
    "FollowUp",
    "Headers",
    "MockWire",
    "Splice",
    "api_at",
    "canonical_path",
    "errors_dialect",
    "served_endpoints",
    "validated",
]

#: Every API the gateway serves, in the order they are routed and listed.
APIS: tuple[Api, ...] = (
    OPENAI_CHAT,
    OPENAI_RESPONSES,
    OPENAI_EMBEDDINGS,
    OPENAI_COMPLETIONS,
    ANTHROPIC_MESSAGES,
    ANTHROPIC_COUNT_TOKENS,
)


#: The follow-ups about a stored Responses response (`GET /v1/responses/{id}`...).
RESPONSES_FOLLOW_UPS: tuple[FollowUp, ...] = FOLLOW_UPS

#: The first segments of the paths under `/v1/` the gateway serves (APIs, models, streams).
API_ROOTS = frozenset({*(api.path.split("/")[2] for api in APIS), "models", "streams"})


def canonical_path(path: str) -> str:
    """`path` in its `/v1/` form: every API path is also served without the prefix (contract
    section 1), e.g. `/chat/completions` is `/v1/chat/completions`; other paths unchanged."""
    if path.startswith("/v1/"):
        return path
    root = path.split("/", 2)[1] if path.startswith("/") else ""
    return "/v1" + path if root in API_ROOTS else path


def api_at(path: str) -> Api | None:
    """The API served at exactly `path` (with or without `/v1`), if any."""
    path = canonical_path(path)
    for api in APIS:
        if api.path == path:
            return api
    return None


def served_endpoints() -> list[str]:
    """Every endpoint of the API surface, as a 404 names them (each also without `/v1`)."""
    follow_ups = [follow_up.endpoint for follow_up in RESPONSES_FOLLOW_UPS]
    return [
        *(api.endpoint for api in APIS),
        *follow_ups,
        "GET /v1/models",
        "GET /v1/models/{id}",
    ]


def errors_dialect(path: str) -> Dialect:
    """The dialect an error on `path` is written in: the API that serves `path` or a path under
    it (Anthropic's under `/v1/messages`), else OpenAI's - also for a request that never reached
    a handler (an unknown path, a wrong method, the drain refusal)."""
    path = canonical_path(path)
    for api in APIS:
        if api.serves(path):
            return api.dialect
    return OPENAI_CHAT.dialect
