"""Coming back to a resumable stream: `GET` / `DELETE /v1/streams/{id}`, and the Responses
follow-ups of a background response the gateway itself keeps.

- `GET /v1/streams/{id}` with `Last-Event-ID` (the header EventSource sends when it
  reconnects, or `?last_event_id=`; none: from the start) replays the kept events after that
  id and follows the live tail to the stream's end - on any replica sharing the store; a
  stream whose replica died is taken over and its answer continued there
  (`gateway.server.stream_takeover`).
- `DELETE /v1/streams/{id}` cancels the stream: its producer (wherever it runs) closes the
  upstream, and the stream ends with one error event (`stream_cancelled`).
- A translated background response (`gateway.server.resumable`) is found by its response id:
  `GET /v1/responses/{id}?stream=true&starting_after=N` resumes after the event whose
  `sequence_number` is N (event N + 1 of the buffer: a translated Responses stream numbers its
  events from 0, one per event, as the buffer does from 1), and `POST .../cancel` cancels it.

A stream is its creator's: for any other gateway key (or none), and for an id unknown or
expired, the answer is 404 in the client's dialect (Anthropic's when it sent
`anthropic-version`), and nothing tells which.
"""

from __future__ import annotations

import functools
import time

from aiohttp import web

from gateway.apis import ANTHROPIC_MESSAGES, APIS, OPENAI_CHAT, FollowUp
from gateway.errors import GatewayError, InvalidRequest, ResourceNotFound
from gateway.server.app_state import STORE
from gateway.server.auth import CLIENT
from gateway.server.middlewares import REQUEST_ID
from gateway.server.relay import error_response
from gateway.server.resumable import STREAM_ID_HEADER, follow
from gateway.server.stream_takeover import take_over
from gateway.state import LIVE, StreamInfo
from gateway.streaming import Dialect

__all__ = ["cancel_stream", "kept_follow_up", "resume_stream"]

_MAX_ID = 2**53


async def resume_stream(request: web.Request) -> web.StreamResponse:
    """`GET /v1/streams/{stream_id}`: the events after `Last-Event-ID`, then the live tail."""
    stream_id = request.match_info["stream_id"]
    try:
        after = _event_id(
            request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        )
        info = await _owned(request, stream_id)
    except GatewayError as exc:
        return error_response(_asking(request), exc, request[REQUEST_ID])
    return await _replay(request, stream_id, info, after)


async def cancel_stream(request: web.Request) -> web.StreamResponse:
    """`DELETE /v1/streams/{stream_id}`: stop it; answers what became of it."""
    stream_id = request.match_info["stream_id"]
    try:
        info = await _owned(request, stream_id)
    except GatewayError as exc:
        return error_response(_asking(request), exc, request[REQUEST_ID])
    await request.app[STORE].streams.cancel(stream_id)
    status = "cancelled" if info.status == LIVE else info.status
    return web.json_response({"id": stream_id, "object": "stream", "status": status})


async def kept_follow_up(request: web.Request, follow_up: FollowUp) -> web.StreamResponse | None:
    """The answer to a Responses follow-up about a response the gateway keeps itself (a
    translated background stream), or None: not one of those (relayed as any follow-up)."""
    answer_id = request.match_info["response_id"]
    streams = request.app[STORE].streams
    stream_id = await streams.named(answer_id)
    if stream_id is None:
        return None
    dialect = OPENAI_CHAT.dialect
    try:
        info = await _owned(request, stream_id, answer_id)
        query = request.rel_url.query
        if follow_up.streams and query.get("stream", "").lower() == "true":
            starting_after = query.get("starting_after")
            after = 0 if starting_after is None else _event_id(starting_after) + 1
            return await _replay(request, stream_id, info, after)
        if follow_up.method == "POST" and follow_up.suffix == "/cancel":
            await streams.cancel(stream_id)
            status = "cancelled" if info.status == LIVE else info.status
            return web.json_response(_response_object(answer_id, status))
        raise ResourceNotFound(
            f"Response {answer_id!r} is kept by this gateway as a stream only: read it with "
            "stream=true, or cancel it"
        )
    except GatewayError as exc:
        return error_response(dialect, exc, request[REQUEST_ID])


async def _replay(
    request: web.Request, stream_id: str, info: StreamInfo, after: int
) -> web.StreamResponse:
    dialect = next((api.dialect for api in APIS if api.name == info.api), OPENAI_CHAT.dialect)
    headers = {
        "x-request-id": request[REQUEST_ID],
        "request-id": request[REQUEST_ID],
        STREAM_ID_HEADER: stream_id,
    }
    reader = request.app[STORE].streams.reader(stream_id, after)
    orphaned = functools.partial(take_over, request, stream_id)
    return await follow(request, reader, dialect, headers, on_orphaned=orphaned)


async def _owned(request: web.Request, stream_id: str, shown: str | None = None) -> StreamInfo:
    """The stream's info, if it exists for the caller's key; else `ResourceNotFound`."""
    info = await request.app[STORE].streams.info(stream_id)
    client = request.get(CLIENT)
    name = None if client is None else client.name
    if info is None or info.owner != name:
        what = "Response" if shown is not None else "Stream"
        raise ResourceNotFound(
            f"{what} {(shown or stream_id)[:64]!r} not found (it may have expired, or was "
            "made with another key)"
        )
    return info


def _event_id(given: str | None) -> int:
    if given is None or given == "":
        return 0
    given = given.strip()
    if not given.isdigit() or int(given) > _MAX_ID:
        raise InvalidRequest("the last event id must be a non-negative integer")
    return int(given)


def _asking(request: web.Request) -> Dialect:
    """The dialect of the SDK asking: Anthropic's when it says its version, else OpenAI's."""
    if "anthropic-version" in request.headers:
        return ANTHROPIC_MESSAGES.dialect
    return OPENAI_CHAT.dialect


def _response_object(answer_id: str, status: str) -> dict[str, object]:
    """The Responses object a cancel answers with: what the gateway can say of it here."""
    return {
        "id": answer_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "background": True,
        "error": None,
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
