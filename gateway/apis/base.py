"""`Api`: everything the gateway knows about one API family, in one value.

An API (OpenAI Chat Completions, Anthropic Messages, ...) is one package of `gateway.apis`
that builds one `Api`: where clients call it and where it goes upstream, the fields of its
request the gateway reads (`request`), which of the client's headers may go upstream, its
wire `Dialect` (how its events are judged, its errors written, its usage counted), how a stream
cut mid-answer is continued (`splice`, if it can be), how a stream is asked for its usage
(`stream_usage`, if it must be) and what the built-in mock writes in it (`mock_wire`). The
server, the router, the providers and the mock take the `Api` of a request and ask it; none of
them branches on an API's name, and adding an API is one package and one line in the registry
(`gateway.apis.APIS`).

`Api` values compare by identity: a provider speaks a set of them, a request carries one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from multidict import MultiMapping

from gateway.apis.mock_wire import MockWire
from gateway.apis.request import EdgeRequest, WholeAnswerRequest
from gateway.apis.splice import Splice
from gateway.streaming import Dialect

__all__ = ["Api", "Headers"]


#: The client's request headers, as the server has them (a case-insensitive multidict).
Headers = MultiMapping[str]


def _no_headers(headers: Headers) -> dict[str, str]:
    return {}


@dataclass(frozen=True, slots=True, eq=False)
class Api:
    """One API family as the gateway serves and relays it."""

    name: str  # the `endpoint` label of metrics and log lines (a closed set)
    path: str  # where the gateway serves it (POST)
    upstream_path: str  # where it goes, relative to the upstream's base URL
    dialect: Dialect
    #: The fields of the client's request the gateway reads (the rest is forwarded as is).
    request: type[EdgeRequest]
    #: What the built-in mock writes in this API, for one answer of (a model, a request).
    mock_wire: Callable[[str, Mapping[str, Any]], MockWire]
    #: A stream's continuation state, if a cut stream of this API can be continued by prefill.
    splice: Callable[[Mapping[str, Any]], Splice] | None = None
    #: The client's headers that go upstream (already sane: never credentials).
    forwarded_headers: Callable[[Headers], dict[str, str]] = field(default=_no_headers)
    #: For an API whose streams report usage only when asked: the fields a streaming call adds
    #: to the client's body to ask (None: the client asked already). Its dialect's tracker
    #: drops what answers only the gateway's question (`StreamTracker.unasked_usage`).
    stream_usage: Callable[[Mapping[str, Any]], Mapping[str, Any] | None] | None = None
    #: The upstream keeps each answer under its id (Responses: `store`, background runs): the
    #: gateway remembers which upstream made it (`StreamTracker.answer_id`,
    #: `Dialect.answer_id`), and the follow-ups about it go there only.
    stored_answers: bool = False

    @property
    def endpoint(self) -> str:
        """`POST <path>`: how messages name the endpoint."""
        return f"POST {self.path}"

    @property
    def family(self) -> str:
        """The API family's name (`openai`, `anthropic`), as messages name it."""
        return self.dialect.name

    @property
    def streams(self) -> bool:
        """Whether this API's answers may stream (its request takes `stream: true`)."""
        return not issubclass(self.request, WholeAnswerRequest)

    def serves(self, path: str) -> bool:
        """Whether `path` is this API's endpoint or under it (its errors are in this API's
        shape there too)."""
        return path == self.path or path.startswith(self.path + "/")
