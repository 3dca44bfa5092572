"""HTTP handlers: the relayed API endpoints, model listing and health.

Every API of `gateway.apis.APIS` is served by one handler (`api_handler(api)`): it validates
the request at the edge against the API's request fields, resolves its route (whose targets
must speak the API; for a request that continues a stored answer, only those on the upstream
holding it, `gateway.server.stored_answers`), builds the upstream call and hands it to a
`Relay`. The follow-ups about a stored response (`follow_up_handler`) are relayed the same way
to the upstream holding it. Every request gets one `RequestRecord`, finished exactly once in
the handler's `finally`, whatever path the request ended by. Errors are answered in the API's
dialect. Each relaying handler says which API it relays (`relayed_endpoint`): admission admits
those.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from aiohttp import web

from gateway.apis import (
    ANTHROPIC_MESSAGES,
    OPENAI_CHAT,
    OPENAI_RESPONSES,
    Api,
    FollowUp,
    errors_dialect,
)
from gateway.errors import (
    ClientDisconnected,
    GatewayError,
    ServerShutdown,
    Unauthorized,
    UnknownModel,
)
from gateway.observability import RequestRecord
from gateway.routing import CallTemplate
from gateway.server.app_state import (
    GATEWAY_KEYS,
    METRICS,
    RECORD,
    REDACTOR,
    ROUTER,
    SETTINGS,
    STORE,
)
from gateway.server.edge_request import read_api_request, timeout_overrides
from gateway.server.lifecycle import LIFECYCLE
from gateway.server.middlewares import REQUEST_ID
from gateway.server.relay import Relay, error_response
from gateway.server.resumable import (
    OUTLIVED_BY,
    ResumableStream,
    kept_in_background,
    wants_resumable,
    when_done,
)
from gateway.server.stored_answers import (
    answer_keeper,
    follow_up_relay,
    forget_deleted,
    owned_route,
)
from gateway.server.stream_resume import kept_follow_up

__all__ = [
    "RelayedEndpoint",
    "api_handler",
    "follow_up_handler",
    "get_model",
    "healthz",
    "list_models",
    "metrics_handler",
    "readyz",
    "refuse_while_draining",
    "relayed_endpoint",
]

_OPENAI = OPENAI_CHAT.dialect
_EPOCH = "1970-01-01T00:00:00Z"  # no creation date is known for a routed name


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Reads a request into the relay that will answer it.
_Prepare = Callable[[web.Request, RequestRecord], Awaitable[Relay]]


@dataclass(frozen=True, slots=True)
class RelayedEndpoint:
    """What a relaying handler serves: the API (its dialect, its admission) and the endpoint's
    name (the `endpoint` label)."""

    api: Api
    name: str


_RELAYED: dict[Callable[..., object], RelayedEndpoint] = {}


def relayed_endpoint(handler: Callable[..., object]) -> RelayedEndpoint | None:
    """What `handler` relays, if it is one of the relaying handlers."""
    return _RELAYED.get(handler)


def api_handler(api: Api) -> Handler:
    """The handler of `POST <api.path>`: `api`'s requests, streaming and not."""

    async def read(request: web.Request, record: RequestRecord) -> Relay:
        return await _read_request(request, api, record)

    async def relay(request: web.Request) -> web.StreamResponse:
        return await _serve(request, api, api.name, read)

    relay.__name__ = relay.__qualname__ = f"relay_{api.name}"
    _RELAYED[relay] = RelayedEndpoint(api, api.name)
    return relay


def follow_up_handler(follow_up: FollowUp) -> Handler:
    """The handler of one follow-up about a stored response (`gateway.server.stored_answers`)."""

    async def read(request: web.Request, record: RequestRecord) -> Relay:
        return await follow_up_relay(request, record, follow_up)

    async def relay(request: web.Request) -> web.StreamResponse:
        kept = await kept_follow_up(request, follow_up)  # a response the gateway keeps itself
        if kept is not None:
            return kept
        response = await _serve(request, OPENAI_RESPONSES, follow_up.name, read)
        if follow_up.forgets:
            await forget_deleted(request, response)
        return response

    relay.__name__ = relay.__qualname__ = f"relay_{follow_up.name}"
    _RELAYED[relay] = RelayedEndpoint(OPENAI_RESPONSES, follow_up.name)
    return relay


async def _serve(
    request: web.Request, api: Api, endpoint: str, prepare: _Prepare
) -> web.StreamResponse:
    record = RequestRecord(
        request_id=request[REQUEST_ID], endpoint=endpoint, metrics=request.app[METRICS]
    )
    request[RECORD] = record  # its tokens are charged to the key (`admission_middleware`)
    try:
        relay = await prepare(request, record)
        return await (relay.stream() if record.stream else relay.complete())
    except GatewayError as exc:
        record.fail(exc)
        response = error_response(api.dialect, exc, record.request_id)
        record.answered(response)
        return response
    except asyncio.CancelledError:
        # Before the relay took over (reading the body, routing): the relay records its
        # own cause, and the first recorded wins.
        transport = request.transport
        gone = transport is None or transport.is_closing()
        if OUTLIVED_BY not in request:  # a resumable stream's record is its task's
            record.fail(ClientDisconnected(phase="reading_request") if gone else ServerShutdown())
        raise
    finally:
        when_done(request, record.finish)


async def _read_request(request: web.Request, api: Api, record: RequestRecord) -> Relay:
    """The client's request read, validated and routed: the relay that will answer it.

    A function of its own so that what only the edge needed (the validated fields) is
    released before the answer streams; the relay keeps the body for as long as a call may
    still need it.
    """
    settings = request.app[SETTINGS]
    fields, body = await read_api_request(request, api, settings.limits.max_request_bytes)
    record.stream = fields.stream
    record.model = fields.model
    route = request.app[ROUTER].resolve(fields.model, api)
    record.bind_route(route.name)
    continued = fields.continues
    if continued is not None:
        route = await owned_route(request, route, continued)
    background = fields.stream and kept_in_background(route, api, body)
    if background:
        del body["background"]  # the gateway keeps it: the translated call is a stream
    template = CallTemplate(
        path=api.upstream_path,
        body=body,
        model=fields.model,
        stream=fields.stream,
        api=api,
        request_id=record.request_id,
        headers=api.forwarded_headers(request.headers),
        overrides=timeout_overrides(request.headers),
    )
    on_answer = answer_keeper(request, route) if api.stored_answers else None
    relay = Relay.for_request(request, record, route, template, api, on_answer)
    if fields.stream and wants_resumable(request, route, background):
        relay.resumable = ResumableStream(request, api, route, named=background)
    return relay


async def list_models(request: web.Request) -> web.Response:
    """`GET /v1/models`: the routed model names (patterns are not names), in the shape of the
    SDK asking: Anthropic's (`client.models.list()` sends `anthropic-version`) or OpenAI's."""
    router = request.app[ROUTER]
    if "anthropic-version" in request.headers:
        names = router.models(ANTHROPIC_MESSAGES)
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


async def get_model(request: web.Request) -> web.Response:
    """`GET /v1/models/{id}`: one routable model (a configured name, or a name one of the
    route patterns matches), in the shape of the SDK asking; else 404 `model_not_found`."""
    model = request.match_info["model_id"]
    anthropic = "anthropic-version" in request.headers
    try:
        request.app[ROUTER].resolve(model)
    except UnknownModel as exc:
        dialect = ANTHROPIC_MESSAGES.dialect if anthropic else _OPENAI
        return error_response(dialect, exc, request[REQUEST_ID])
    if anthropic:
        body = {"type": "model", "id": model, "display_name": model, "created_at": _EPOCH}
        return web.json_response(body)
    return web.json_response(
        {"id": model, "object": "model", "created": 0, "owned_by": "sse-gateway"}
    )


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


@runtime_checkable
class _SharedStore(Protocol):
    """A store shared through Redis (`RedisStore`): its policy, and whether Redis answers."""

    on_error: str

    async def reachable(self) -> bool: ...


async def readyz(request: web.Request) -> web.Response:
    """Ready unless draining, or unless Redis is required (`state.on_error: closed`) and does
    not answer (`RedisStore.reachable`: a cached check, at most one `PING` a second): a load
    balancer stops sending traffic when this turns 503."""
    if request.app[LIFECYCLE].draining:
        return web.json_response({"status": "draining"}, status=503)
    store = request.app[STORE]
    shared = store if isinstance(store, _SharedStore) else None
    if shared is not None and shared.on_error == "closed" and not await shared.reachable():
        return web.json_response({"status": "redis_unavailable"}, status=503)
    return web.json_response({"status": "ready"})


def refuse_while_draining(request: web.Request) -> web.Response:
    """A request that arrives while the gateway drains: retryable 503 in the path's dialect,
    connection closed."""
    dialect = errors_dialect(request.path)
    response = error_response(dialect, ServerShutdown(), request[REQUEST_ID])
    response.headers["Retry-After"] = "1"
    response.force_close()
    return response
