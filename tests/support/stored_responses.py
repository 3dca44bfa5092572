"""A stateful fake OpenAI Responses upstream: it keeps what it answered, as OpenAI does.

`StoredResponsesUpstream(name)` is a real aiohttp server on 127.0.0.1 serving `/v1/responses`
(streaming and not, `background: true`), `GET` / `DELETE /v1/responses/{id}` (`?stream=true&
starting_after=N` replays a response's events after N, then follows its live tail), `POST
/v1/responses/{id}/cancel` and `GET /v1/responses/{id}/input_items`. Ids are its own
(`resp_<name>_<n>`), so a test tells which upstream made a response; each answer says which
upstream wrote it and which turn of its conversation it is (`"<name> turn <n>"`), so a new
conversation is told from a continued one. An id it does not hold is OpenAI's 404 (or, as a
`previous_response_id`, its 400 `previous_response_not_found`).

Faults: `failing` answers every call 500; `cut_resumes` ends a resumed stream after one event,
without its terminal event. Every call is kept in `calls` as `(method, path)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["StoredResponsesUpstream"]

_WORDS = 4  # text deltas per answer


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass
class _Stored:
    response: dict[str, Any]
    input: list[dict[str, Any]]
    turn: int
    events: list[bytes] = field(default_factory=list)
    done: bool = False
    grown: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class StoredResponsesUpstream:
    def __init__(self, name: str, *, pace: float = 0.0) -> None:
        self.name = name
        self.pace = pace  # seconds between a background response's events
        self.failing = False
        self.cut_resumes = False
        self.calls: list[tuple[str, str]] = []
        self.stored: dict[str, _Stored] = {}
        self._count = 0
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    async def __aenter__(self) -> StoredResponsesUpstream:
        app = web.Application()
        app.router.add_post("/v1/responses", self._create)
        app.router.add_get("/v1/responses/{id}", self._retrieve)
        app.router.add_delete("/v1/responses/{id}", self._delete)
        app.router.add_post("/v1/responses/{id}/cancel", self._cancel)
        app.router.add_get("/v1/responses/{id}/input_items", self._input_items)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for stored in self.stored.values():
            if stored.task is not None:
                stored.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stored.task
        assert self._runner is not None
        await self._runner.cleanup()

    def paths(self) -> list[str]:
        """The paths of the calls so far, with their methods (`GET /v1/responses/x`)."""
        return [f"{method} {path}" for method, path in self.calls]

    # --- handlers ---------------------------------------------------------------------------

    def _seen(self, request: web.Request) -> web.Response | None:
        self.calls.append((request.method, request.path_qs))
        if self.failing:
            return _error(500, "The server had an error.", "server_error")
        return None

    async def _create(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._seen(request)) is not None:
            return refused
        body = await request.json()
        previous = body.get("previous_response_id")
        turn = 1
        if previous is not None:
            if previous not in self.stored:
                return _error(
                    400,
                    f"Previous response with id '{previous}' not found.",
                    "previous_response_not_found",
                    param="previous_response_id",
                )
            turn = self.stored[previous].turn + 1
        self._count += 1
        answer_id = f"resp_{self.name}_{self._count}"
        background = bool(body.get("background"))
        text = [f"{self.name} ", "turn ", f"{turn} ", "done."][:_WORDS]
        given = body.get("input")
        items = [{"role": "user", "content": given}] if isinstance(given, str) else list(given)
        stored = _Stored(
            response=_response(answer_id, body, "queued" if background else "in_progress", turn),
            input=[
                {"id": f"msg_in_{self.name}_{self._count}_{n}", "type": "message", **item}
                for n, item in enumerate(items)
            ],
            turn=turn,
        )
        if body.get("store", True):
            self.stored[answer_id] = stored
        stored.task = asyncio.create_task(self._generate(stored, text, background))
        if body.get("stream"):
            return await self._stream(request, stored, after=-1)
        if background:
            return web.Response(body=_dumps(stored.response), content_type="application/json")
        await stored.task
        return web.Response(body=_dumps(stored.response), content_type="application/json")

    async def _retrieve(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._seen(request)) is not None:
            return refused
        stored = self.stored.get(request.match_info["id"])
        if stored is None:
            return _not_found(request.match_info["id"])
        if request.query.get("stream") == "true":
            after = int(request.query.get("starting_after", "-1"))
            return await self._stream(request, stored, after=after, resumed=True)
        return web.Response(body=_dumps(stored.response), content_type="application/json")

    async def _delete(self, request: web.Request) -> web.Response:
        if (refused := self._seen(request)) is not None:
            return refused
        answer_id = request.match_info["id"]
        if self.stored.pop(answer_id, None) is None:
            return _not_found(answer_id)
        return web.json_response({"id": answer_id, "object": "response", "deleted": True})

    async def _cancel(self, request: web.Request) -> web.Response:
        if (refused := self._seen(request)) is not None:
            return refused
        stored = self.stored.get(request.match_info["id"])
        if stored is None:
            return _not_found(request.match_info["id"])
        if not stored.response["background"]:
            return _error(400, "Only background responses can be cancelled.", None)
        if stored.task is not None and not stored.done:
            stored.task.cancel()
            stored.response["status"] = "cancelled"
            stored.done = True
            stored.grown.set()
        return web.Response(body=_dumps(stored.response), content_type="application/json")

    async def _input_items(self, request: web.Request) -> web.Response:
        if (refused := self._seen(request)) is not None:
            return refused
        stored = self.stored.get(request.match_info["id"])
        if stored is None:
            return _not_found(request.match_info["id"])
        data = stored.input
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": False,
            }
        )

    # --- answers ----------------------------------------------------------------------------

    async def _generate(self, stored: _Stored, text: list[str], background: bool) -> None:
        """Write the response's events into `stored` (paced when in the background)."""
        response = stored.response
        where = {"item_id": f"msg_{response['id']}", "output_index": 0, "content_index": 0}
        emit = self._emitter(stored)
        response["status"] = "in_progress"
        emit("response.created", response=dict(response))
        emit("response.in_progress", response=dict(response))
        for piece in text:
            if background and self.pace:
                await asyncio.sleep(self.pace)
            emit("response.output_text.delta", **where, delta=piece)
        whole = "".join(text)
        response.update(
            status="completed",
            output=[
                {
                    "id": where["item_id"],
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": whole, "annotations": []}],
                }
            ],
            usage={
                "input_tokens": 3,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": len(text),
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 3 + len(text),
            },
        )
        emit("response.output_text.done", **where, text=whole)
        emit("response.completed", response=dict(response))
        stored.done = True

    def _emitter(self, stored: _Stored) -> Any:
        def emit(kind: str, **fields: Any) -> None:
            payload = {"type": kind, "sequence_number": len(stored.events), **fields}
            stored.events.append(f"event: {kind}\ndata: ".encode() + _dumps(payload) + b"\n\n")
            stored.grown.set()

        return emit

    async def _stream(
        self, request: web.Request, stored: _Stored, *, after: int, resumed: bool = False
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        sent = after + 1
        while True:
            while sent < len(stored.events):
                await response.write(stored.events[sent])
                sent += 1
                if resumed and self.cut_resumes:
                    return response  # ends without its terminal event
            if stored.done:
                break
            stored.grown.clear()
            if sent == len(stored.events):
                await stored.grown.wait()
        await response.write_eof()
        return response


def _response(answer_id: str, body: dict[str, Any], status: str, turn: int) -> dict[str, Any]:
    return {
        "id": answer_id,
        "object": "response",
        "created_at": 1700000000 + turn,
        "status": status,
        "background": bool(body.get("background")),
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "model": body.get("model"),
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "store": body.get("store", True),
        "tool_choice": "auto",
        "tools": [],
        "usage": None,
    }


def _error(
    status: int, message: str, code: str | None, *, param: str | None = None
) -> web.Response:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    error = {"message": message, "type": kind, "param": param, "code": code}
    return web.json_response({"error": error}, status=status)


def _not_found(answer_id: str) -> web.Response:
    return _error(404, f"Response with id '{answer_id}' not found.", None)
