"""The provider interface: how the gateway opens a call to an upstream and reads its body.

A `Provider` turns an `UpstreamRequest` into an `UpstreamResponse` whose status was 2xx; every
other outcome is raised as a `GatewayError` (an error status is read, bounded, and translated
before `open` returns). The response yields the body's bytes exactly as they arrived; framing
and meaning belong to the streaming core and the request's `Dialect`.

A provider speaks one or more APIs (`apis`, `gateway.apis.Api` values): an HTTP provider
speaks its family's; the built-in mock speaks every API, so each endpoint works with no
configuration. A request carries its API; it is only ever sent to a provider that speaks it
(the router holds that), so a provider with one API never has to look.

Invariants every provider keeps:
- `open` and `chunks` raise only `GatewayError`s (and `CancelledError`): foreign exceptions are
  translated inside the provider, in one place per transport;
- `UpstreamResponse.aclose()` is idempotent and, unless the body was read to its end, closes the
  connection, so the upstream sees the close and stops generating;
- the client's own credentials never reach an upstream: providers authenticate with the key from
  their settings only.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from gateway.apis import Api
from gateway.streaming import Context, Timeouts
from gateway.translation import TranslatedCall

__all__ = ["Provider", "UpstreamRequest", "UpstreamResponse"]


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One call to an upstream, as the provider sends it."""

    path: str  # relative to the upstream's base URL, e.g. "/chat/completions"; may hold a query
    body: bytes  # JSON, the client's request with the target's model name (b"": no body)
    model: str  # the model name sent upstream ("" for a call about a resource, not a model)
    stream: bool
    timeouts: Timeouts
    #: The API the body is written in and the answer must come in.
    api: Api
    request_id: str = ""
    #: `POST`, or `GET` / `DELETE` of a resource the upstream holds (a stored response).
    method: str = "POST"
    #: A call about a resource the upstream holds (`GET /responses/{id}`...), not a new answer:
    #: its 404 says the resource does not exist (`ResourceNotFound`, the client's business),
    #: not that the target is misconfigured.
    resource_call: bool = False
    #: Headers of the client's request to pass on (already filtered by the endpoint: never
    #: credentials); the provider's own authentication always wins over them.
    headers: Mapping[str, str] = field(default_factory=dict, compare=False)
    #: Called once the request has been written, to start the first-byte clock.
    on_sent: Callable[[], None] | None = field(default=None, compare=False)
    #: The client's request was in another API (`api` is the upstream's): its answer is
    #: translated back with this.
    translated: TranslatedCall | None = field(default=None, compare=False)


class UpstreamResponse(abc.ABC):
    """A successful (2xx) upstream answer whose body is still to be read."""

    __slots__ = ()  # one per open stream: subclasses may do without a `__dict__`

    status: int = 200
    headers: Mapping[str, str] = {}

    @abc.abstractmethod
    def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes, each read as it arrived."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release the response; closes the connection unless the body was fully read."""

    def abort(self) -> None:  # noqa: B027 - optional: a response without a connection
        """Close the connection now, synchronously (the client is gone: the upstream must
        stop at once); no read follows, and `aclose()` still releases the response."""


class Provider(abc.ABC):
    """An upstream API endpoint the gateway can call."""

    #: The GenAI provider its family is, as traces name it (`gen_ai.provider.name`).
    vendor: ClassVar[str] = "unknown"

    def __init__(self, name: str, api: Api, *more: Api) -> None:
        self.name = name
        #: The APIs this provider speaks, in the order it names them.
        self.apis: tuple[Api, ...] = (api, *more)

    def speaks(self, api: Api) -> bool:
        return api in self.apis

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Acquire long-lived resources (connection pools); called once at app start-up."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what `start` acquired; called once at shutdown."""

    @abc.abstractmethod
    async def open(self, ctx: Context, request: UpstreamRequest) -> UpstreamResponse:
        """Send `request` and return the 2xx response, or raise the translated error."""
