"""Admission: who may call `/v1/*`, and whether there is room - decided from the head alone.

`admission_middleware` runs before any handler, so before any request body is read (and
before `100 Continue` is sent, see `gateway.server.request_body`). For a `/v1/*` request
(`/healthz`, `/readyz` and `/metrics` are not its business):

1. with gateway keys configured, the request must present one (`Authorization: Bearer` or
   `x-api-key`, `gateway.server.auth`): else 401 in the path's dialect (Anthropic's
   `authentication_error` on `/v1/messages`) with `WWW-Authenticate`;
2. a relayed request (a POST to an API endpoint, or a follow-up about a stored response: the
   handler says which API it relays, `relayed_endpoint`) must get a `Lease` of the app's state store
   (`gateway.state.Admission.admit`, given the key's name and limits): else 429 (the key's
   own limits) or 503 (the gateway's `limits.max_streams`), both with `Retry-After`, at once.
   The lease is released when the handler returns, that is when the response has been
   relayed, and charged the tokens (input + output) its calls reported (the handler's
   `RequestRecord`), for the key's tokens-per-minute limit.

A refused request is recorded like any other (one `request_finished` line, the metrics: outcome
`api_error` or `rate_limit`, route `none`). The client's name - never its key - is bound into
every log line of its request as `client`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from gateway.apis import canonical_path, errors_dialect
from gateway.errors import GatewayError, KeyRateLimited, RateWindow, Unauthorized
from gateway.observability import RequestRecord
from gateway.server.app_state import GATEWAY_KEYS, METRICS, RECORD, STORE
from gateway.server.auth import CLIENT, Client
from gateway.server.handlers import RelayedEndpoint, relayed_endpoint
from gateway.server.middlewares import REQUEST_ID
from gateway.server.relay import error_response
from gateway.server.resumable import when_done
from gateway.state import AdmissionLease, KeyLimits

__all__ = ["OTHER_ENDPOINT", "admission_middleware"]

#: The `endpoint` label of a refused `/v1/*` request that is not a relayed endpoint's.
OTHER_ENDPOINT = "other"
_CHALLENGE = 'Bearer realm="sse-gateway"'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: The admitted request's key window, told in `x-ratelimit-*-requests` on its answer.
RATE_WINDOW = web.RequestKey("rate_window", RateWindow)


async def rate_limit_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """`on_response_prepare`: the `x-ratelimit-*-requests` headers of a key with a per-minute
    limit, on every answer of an admitted request (streams, JSON, errors alike), set just
    before the head is written."""
    rate = request.get(RATE_WINDOW)
    if isinstance(rate, RateWindow):
        response.headers.update(rate.headers())


@web.middleware
async def admission_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not canonical_path(request.path).startswith("/v1/"):
        return await handler(request)
    relayed = relayed_endpoint(request.match_info.handler)
    keys = request.app[GATEWAY_KEYS]
    client: Client | None = None
    lease: AdmissionLease | None = None
    try:
        if keys:
            client = keys.identify(request.headers)
            if client is None:
                raise Unauthorized()
            request[CLIENT] = client
        if relayed is not None:
            lease = await request.app[STORE].admit(_limits(client))
            if lease.rate is not None:
                request[RATE_WINDOW] = lease.rate
    except GatewayError as exc:
        return _refuse(request, relayed, exc, client)
    token = None
    if client is not None:
        token = structlog.contextvars.bind_contextvars(client=client.name)["client"]
    try:
        return await handler(request)
    finally:
        if lease is not None:
            # A resumable stream's lease is held (and charged) until its task ends.
            when_done(request, lambda: _settle(request, lease))
        if token is not None:
            structlog.contextvars.reset_contextvars(client=token)


def _settle(request: web.Request, lease: AdmissionLease) -> None:
    """The request is over: its place given back, its tokens charged to its key."""
    lease.release()
    record = request.get(RECORD)
    if isinstance(record, RequestRecord):
        lease.charge(_charged(record.tokens))


def _limits(client: Client | None) -> KeyLimits | None:
    """What admission needs of `client`: its name and limits."""
    if client is None:
        return None
    return KeyLimits(
        client.name, client.max_streams, client.requests_per_minute, client.tokens_per_minute
    )


def _charged(tokens: dict[str, int]) -> int:
    """What a request costs its key's tokens per minute: its input and output tokens (cached
    and reasoning tokens are parts of those)."""
    return tokens.get("input", 0) + tokens.get("output", 0)


def _refuse(
    request: web.Request,
    relayed: RelayedEndpoint | None,
    error: GatewayError,
    client: Client | None,
) -> web.Response:
    """Answer a refused request in its path's dialect, recorded like any finished request."""
    dialect = relayed.api.dialect if relayed is not None else errors_dialect(request.path)
    record = RequestRecord(
        request_id=request[REQUEST_ID],
        endpoint=relayed.name if relayed is not None else OTHER_ENDPOINT,
        metrics=request.app[METRICS],
    )
    response = error_response(dialect, error, record.request_id)
    if isinstance(error, Unauthorized):
        response.headers["WWW-Authenticate"] = _CHALLENGE
    if isinstance(error, KeyRateLimited) and error.rate is not None:
        response.headers.update(error.rate.headers())
    record.fail(error)
    record.answered(response)
    bound = {"client": client.name} if client is not None else {}
    with structlog.contextvars.bound_contextvars(**bound):
        record.finish()
    return response
