"""Stored answers: the follow-ups of a Responses response reach the upstream that holds it.

A Responses upstream keeps what it answered (`store`, background runs) under the response's
id. The gateway remembers, for each id an answer carried (`Relay`'s `on_answer`), its
`ResponseOwner` in the state store: the upstream, the route, and the gateway key's holder who
asked. Then:

- a new turn (`previous_response_id`, any API whose request `continues` a stored answer) goes
  to its route's targets on the owning upstream only, however the route would fail over: an
  upstream that does not know the id would refuse the turn, or silently start a new
  conversation. When the gateway does not know the owner (never seen, or forgotten), a route
  whose targets are all on one upstream sends it there (that upstream is the only one that
  could hold it, and it decides); a route that spans several is refused with
  `previous_response_not_found`, never guessed; so is another key's response;
- a follow-up about one response (`GET` / `DELETE /v1/responses/{id}`, `POST .../cancel`,
  `GET .../input_items`, and `GET ...?stream=true&starting_after=N`, which resumes a background
  stream) goes to the owner only, under its route's limits and the request's own timeouts,
  relayed like any answer (a resumed stream is judged and ended as every stream is). An id the
  gateway cannot place is a 404 in OpenAI's shape, unless one upstream alone serves Responses
  in the whole configuration (then it decides). Another key's response does not exist for the
  caller: 404, and no upstream is asked.

An id is forgotten when its `DELETE` succeeds; it also expires (`state.response_ttl`) and the
oldest go first (`state.max_responses`).
"""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import quote, urlencode

from aiohttp import web

from gateway.apis import OPENAI_RESPONSES, Api, FollowUp
from gateway.errors import InvalidRequest, ResourceNotFound, UnknownPreviousResponse
from gateway.observability import RequestRecord
from gateway.routing import CallTemplate, Route, Router
from gateway.server.app_state import ROUTER, STORE
from gateway.server.auth import CLIENT
from gateway.server.edge_request import timeout_overrides
from gateway.server.relay import AnswerKept, Relay
from gateway.state import ResponseOwner

__all__ = [
    "answer_keeper",
    "follow_up_relay",
    "forget_deleted",
    "owned_route",
]

#: What a response id may be: the ids upstreams give (`resp_` and hex), never a path.
_ID = re.compile(r"^[A-Za-z0-9_\-.:]{1,256}$")


def _client_name(request: web.Request) -> str | None:
    client = request.get(CLIENT)
    return None if client is None else client.name


def answer_keeper(request: web.Request, route: Route) -> AnswerKept:
    """What a relay of `route` tells when its upstream keeps the answer: the owner is
    remembered for the key that asked."""
    owners = request.app[STORE].owners
    client = _client_name(request)

    async def remember(answer_id: str, upstream: str) -> None:
        await owners.remember(answer_id, ResponseOwner(upstream, route.name, client))

    return remember


async def owned_route(request: web.Request, route: Route, answer_id: str) -> Route:
    """`route` narrowed to its targets on the upstream holding `answer_id` (a new turn of a
    stored conversation), or the refusal when that cannot be told (module docstring)."""
    owner = await request.app[STORE].owners.owner(answer_id)
    if owner is not None and owner.client != _client_name(request):
        raise UnknownPreviousResponse(_previous_not_found(answer_id))  # another key's
    if owner is None:
        if len({target.provider.name for target in route.targets}) == 1:
            return route  # the one upstream that could hold it decides
        raise UnknownPreviousResponse(_previous_not_found(answer_id))
    held = tuple(t for t in route.targets if t.provider.name == owner.upstream)
    if not held:
        raise UnknownPreviousResponse(
            f"previous response {_shown(answer_id)} is held by an upstream that model "
            f"{route.name!r} is not routed to: continue it with a model of its route"
        )
    return dataclasses.replace(route, targets=held, continuations=0)


async def follow_up_relay(
    request: web.Request, record: RequestRecord, follow_up: FollowUp
) -> Relay:
    """The relay of one follow-up: the call about `{response_id}` to the upstream holding it."""
    answer_id = request.match_info["response_id"]
    if not _ID.match(answer_id):
        raise InvalidRequest(f"invalid response id {_shown(answer_id)}")
    route = await _owner_route(request, answer_id)
    record.bind_route(route.name)
    query = request.rel_url.query
    stream = follow_up.streams and query.get("stream", "").lower() == "true"
    record.stream = stream
    path = f"/responses/{quote(answer_id, safe='')}{follow_up.suffix}"
    if query:
        path += "?" + urlencode(list(query.items()))
    template = CallTemplate(
        path=path,
        body={},
        model="",
        stream=stream,
        api=OPENAI_RESPONSES,
        request_id=record.request_id,
        headers=OPENAI_RESPONSES.forwarded_headers(request.headers),
        overrides=timeout_overrides(request.headers),
        method=follow_up.method,
        resource_call=True,
    )
    return Relay.for_request(request, record, route, template, OPENAI_RESPONSES)


async def forget_deleted(request: web.Request, response: web.StreamResponse) -> None:
    """After a `DELETE` the upstream answered 2xx: the id is gone, forget its owner."""
    if 200 <= response.status < 300:
        await request.app[STORE].owners.forget(request.match_info["response_id"])


async def _owner_route(request: web.Request, answer_id: str) -> Route:
    """The route (narrowed to the owner's targets) a follow-up about `answer_id` takes."""
    router = request.app[ROUTER]
    owner = await request.app[STORE].owners.owner(answer_id)
    if owner is not None:
        if owner.client != _client_name(request):
            raise ResourceNotFound(_not_found(answer_id))  # another key's
        route = _route_named(router, owner.route)
        if route is not None:
            held = tuple(t for t in route.targets if t.provider.name == owner.upstream)
            if held:
                return dataclasses.replace(route, targets=held, continuations=0)
    sole = _sole_upstream_route(router, OPENAI_RESPONSES)
    if sole is None:
        raise ResourceNotFound(_not_found(answer_id))
    return sole


def _route_named(router: Router, name: str) -> Route | None:
    return next((route for route in router.routes if route.name == name), None)


def _sole_upstream_route(router: Router, api: Api) -> Route | None:
    """When one upstream alone serves `api` in the whole configuration: the first route's
    targets on it (their limits); else None."""
    found: Route | None = None
    upstreams: set[str] = set()
    for route in router.routes:
        held = tuple(t for t in route.targets if t.provider.speaks(api))
        upstreams.update(t.provider.name for t in held)
        if len(upstreams) > 1:
            return None
        if held and found is None:
            found = dataclasses.replace(route, targets=held[:1], continuations=0)
    return found


def _shown(answer_id: str, limit: int = 64) -> str:
    shown = "".join(ch if ch.isprintable() else "?" for ch in answer_id[:limit])
    return repr(shown + ("..." if len(answer_id) > limit else ""))


def _not_found(answer_id: str) -> str:
    return (
        f"Response with id {_shown(answer_id)} not found: this gateway does not know which "
        "upstream holds it (it remembers the responses made through it, for this key)"
    )


def _previous_not_found(answer_id: str) -> str:
    return (
        f"Previous response with id {_shown(answer_id)} not found: this gateway does not know "
        "which of the route's upstreams holds it (it remembers the responses made through it, "
        "for this key)"
    )
