"""HTTP handlers: the relayed API endpoints, model listing and health.

`chat_completions` (OpenAI) and `messages` (Anthropic) are one handler over two `Endpoint`
values: it validates the request at the edge, resolves its route (which must speak the
endpoint's dialect), builds the upstream call and hands it to a `Relay`. Every request gets one
`RequestRecord`, finished exactly once in this handler's `finally`, whatever path the request
ended by. Errors are answered in the endpoint's dialect.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.errors import ClientDisconnected, GatewayError, ServerShutdown, Unauthorized
from gateway.observability import RequestRecord
from gateway.routing import CallTemplate
from gateway.server.app_state import (
    GATEWAY_KEYS,
    METRICS,
    REDACTOR,
    ROUTER,
    SERVER_CONTEXT,
    SETTINGS,
)
from gateway.server.chat_request import timeout_overrides
from gateway.server.endpoints import CHAT_COMPLETIONS, MESSAGES, Endpoint, dialect_for_path
from gateway.server.lifecycle import LIFECYCLE
from gateway.server.middlewares import REQUEST_ID
from gateway.server.relay import Relay, RelayLimits, error_response
from gateway.streaming import OpenAIDialect

__all__ = [
    "chat_completions",
    "healthz",
    "list_models",
    "messages",
    "metrics_handler",
    "readyz",
    "refuse_while_draining",
]

_OPENAI = OpenAIDialect()
_EPOCH = "1970-01-01T00:00:00Z"  # no creation date is known for a routed name


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """`POST /v1/chat/completions`: OpenAI Chat Completions, streaming and not."""
    return await _relay(request, CHAT_COMPLETIONS)


async def messages(request: web.Request) -> web.StreamResponse:
    """`POST /v1/messages`: Anthropic Messages, streaming and not."""
    return await _relay(request, MESSAGES)


async def _relay(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    record = RequestRecord(
        request_id=request[REQUEST_ID], endpoint=endpoint.name, metrics=request.app[METRICS]
    )
    try:
        relay = await _read_request(request, endpoint, record)
        return await (relay.stream() if record.stream else relay.complete())
    except GatewayError as exc:
        record.fail(exc)
        response = error_response(endpoint.dialect, exc, record.request_id)
        record.answered(response)
        return response
    except asyncio.CancelledError:
        # Before the relay took over (reading the body, routing): the relay records its
        # own cause, and the first recorded wins.
        transport = request.transport
        gone = transport is None or transport.is_closing()
        record.fail(ClientDisconnected(phase="reading_request") if gone else ServerShutdown())
        raise
    finally:
        record.finish()


async def _read_request(request: web.Request, endpoint: Endpoint, record: RequestRecord) -> Relay:
    """The client's request read, validated and routed: the relay that will answer it.

    A function of its own so that what only the edge needed (the validated fields) is
    released before the answer streams; the relay keeps the body for as long as a call may
    still need it.
    """
    settings = request.app[SETTINGS]
    fields, body = await endpoint.read(request, settings.limits.max_request_bytes)
    record.stream = fields.stream
    record.model = fields.model
    route = request.app[ROUTER].resolve(fields.model, endpoint.dialect)
    record.bind_route(route.name)
    template = CallTemplate(
        path=endpoint.upstream_path,
        body=body,
        model=fields.model,
        stream=fields.stream,
        dialect=endpoint.dialect.name,
        request_id=record.request_id,
        headers=endpoint.forwarded_headers(request),
        overrides=timeout_overrides(request.headers),
    )
    limits = RelayLimits(
        heartbeat=settings.heartbeat,
        max_event_bytes=settings.limits.max_event_bytes,
        max_response_bytes=settings.limits.max_response_bytes,
    )
    return Relay(
        request,
        record,
        route,
        template,
        endpoint.dialect,
        limits,
        request.app[SERVER_CONTEXT],
        request.app[REDACTOR],
    )


async def list_models(request: web.Request) -> web.Response:
    """`GET /v1/models`: the routed model names (patterns are not names), in the shape of the
    SDK asking: Anthropic's (`client.models.list()` sends `anthropic-version`) or OpenAI's."""
    router = request.app[ROUTER]
    if "anthropic-version" in request.headers:
        names = router.models(MESSAGES.dialect.name)
        models = [
            {"type": "model", "id": name, "display_name": name, "created_at": _EPOCH}
            for name in names
        ]
        return web.json_response(
            {
                "data": models,
                "has_more": False,
                "first_id": names[0] if names else None,
                "last_id": names[-1] if names else None,
            }
        )
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "sse-gateway"}
        for name in router.models()
    ]
    return web.json_response({"object": "list", "data": data})


async def metrics_handler(request: web.Request) -> web.Response:
    """The Prometheus exposition; behind a gateway key when `metrics.key_required(...)`:
    by default whenever gateway keys are configured, unless on its own listener."""
    settings, keys = request.app[SETTINGS], request.app[GATEWAY_KEYS]
    if settings.metrics.key_required(keys_configured=bool(keys)):
        try:
            accepted = keys.accepts(request)
        except GatewayError as exc:  # several keys presented
            return error_response(_OPENAI, exc, request[REQUEST_ID])
        if not accepted:
            response = error_response(_OPENAI, Unauthorized(), request[REQUEST_ID])
            response.headers["WWW-Authenticate"] = 'Bearer realm="sse-gateway"'
            return response
    body, content_type = request.app[METRICS].exposition(
        request.headers.get("Accept", ""), request.app[REDACTOR]
    )
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready unless draining: a load balancer stops sending traffic when this turns 503."""
    if request.app[LIFECYCLE].draining:
        return web.json_response({"status": "draining"}, status=503)
    return web.json_response({"status": "ready"})


def refuse_while_draining(request: web.Request) -> web.Response:
    """A request that arrives while the gateway drains: retryable 503 in the path's dialect,
    connection closed."""
    dialect = dialect_for_path(request.path)
    response = error_response(dialect, ServerShutdown(), request[REQUEST_ID])
    response.headers["Retry-After"] = "1"
    response.force_close()
    return response
