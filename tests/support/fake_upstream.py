"""A scriptable fake OpenAI-compatible upstream: a real aiohttp server for end-to-end tests.

Role: stand in for an LLM provider behind the gateway. It listens on 127.0.0.1 (random port),
answers every method on every path under ``/v1/`` (and Azure OpenAI's ``/openai/``) and picks
a *behaviour* by the request body's ``"model"``: stream scripted SSE bytes, stall, cut the
connection (FIN or RST), or misbehave.

Invariants:

- Every request whose body was received is recorded as one `UpstreamCall`, in arrival order, in
  `FakeUpstream.requests` and (once each) through `FakeUpstream.next_call`, with the loop time
  it arrived at (``call.arrived``): `calls_for(model)` and `gaps(calls)` give a test the attempts
  one target saw and their spacing.
- ``call.closed_by_peer`` is set only when the *peer* went away while the handler was running
  (aiohttp handler cancellation, or a write on a closed connection). The fake's own cuts set
  ``call.cut_by_upstream`` instead, and `FakeUpstream.close` cancelling a stalled handler sets
  neither. ``call.finished`` is set whenever the handler ends.
- Bytes are written exactly as given, one write per chunk; nothing is reformatted.
- A behaviour that takes over the connection (raw bytes, cuts) returns a detached response, so
  aiohttp writes nothing more on it (no terminating chunk, no error page).
- ``CancelledError`` is always re-raised; synchronisation uses events, never polling.

The calls (`UpstreamCall`) live in `tests.support.fake_call` and the behaviours in
`tests.support.fake_behaviours`; this module re-exports both, so tests import from here.
"""

from __future__ import annotations

import asyncio
import json
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.support.fake_behaviours import (
    DetachedResponse,
    cut_fin,
    cut_rst,
    end_clean_without_done,
    flood,
    gaps,
    html,
    huge_event,
    invalid_json_event,
    json_completion,
    json_cut,
    json_stall_before_headers,
    reset_before_headers,
    sequence,
    sse_stream,
    stall_after,
    stall_before_first_event,
    stall_before_headers,
    status,
)
from tests.support.fake_call import Behaviour, UpstreamCall
from tests.support.openai_wire import CREATED, DONE, openai_chunks, openai_error

__all__ = [
    "CREATED",
    "DONE",
    "Behaviour",
    "FakeUpstream",
    "UpstreamCall",
    "cut_fin",
    "cut_rst",
    "end_clean_without_done",
    "flood",
    "gaps",
    "html",
    "huge_event",
    "invalid_json_event",
    "json_completion",
    "json_cut",
    "json_stall_before_headers",
    "openai_chunks",
    "openai_error",
    "reset_before_headers",
    "sequence",
    "sse_stream",
    "stall_after",
    "stall_before_first_event",
    "stall_before_headers",
    "status",
]


class FakeUpstream:
    """The fake provider: a real aiohttp server with handler cancellation on peer close.

    Use as ``async with FakeUpstream() as up:`` (or `start`/`close`). Point the client at
    `base_url`; choose behaviours per model with `script`; everything else gets `default`.
    `close` cancels handlers that still run (without marking them closed by the peer).
    """

    def __init__(self, *, default: Behaviour | None = None) -> None:
        self.default: Behaviour = default if default is not None else sse_stream()
        self.requests: list[UpstreamCall] = []
        self._scripts: dict[str, Behaviour] = {}
        self._arrivals: asyncio.Queue[UpstreamCall] = asyncio.Queue()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._closing = False

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeUpstream is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def endpoint(self) -> str:
        """The Azure-style resource endpoint, e.g. ``http://127.0.0.1:PORT`` (Azure OpenAI's
        paths, ``/openai/v1/...`` and ``/openai/deployments/...``, are answered too)."""
        return f"http://127.0.0.1:{self.port}"

    def script(self, model: str, behaviour: Behaviour) -> None:
        """Answer requests whose ``body["model"] == model`` with ``behaviour`` (replaces)."""
        self._scripts[model] = behaviour

    def calls_for(self, model: str) -> list[UpstreamCall]:
        """The calls received for ``model``, in arrival order."""
        return [call for call in self.requests if call.model == model]

    def forget_calls(self) -> None:
        """Drop the calls recorded so far, from `requests` and from `next_call`'s queue, so
        that a long test (a soak) keeps its memory flat; calls still running go on."""
        self.requests.clear()
        while not self._arrivals.empty():
            self._arrivals.get_nowait()

    async def next_call(self, timeout: float = 10) -> UpstreamCall:  # noqa: ASYNC109 - a hang guard
        """Return the oldest call not yet returned here, waiting for one if needed."""
        try:
            async with asyncio.timeout(timeout):
                return await self._arrivals.get()
        except TimeoutError:
            raise AssertionError(
                f"no new upstream request within {timeout}s "
                f"({len(self.requests)} received in total)"
            ) from None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/v1/{tail:.*}", self._handle)
        app.router.add_route("*", "/openai/{tail:.*}", self._handle)  # Azure OpenAI's paths
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def close(self) -> None:
        """Cancel running handlers, then stop the server. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing = True
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers)
        await runner.cleanup()

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = _parse_object(raw)
        model = body.get("model")
        call = UpstreamCall(
            model=model if isinstance(model, str) else "",
            body=body,
            headers=request.headers,
            method=request.method,
            path=request.path,
            raw_body=raw,
            query=request.query_string,
        )
        self.requests.append(call)
        self._arrivals.put_nowait(call)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        call.started.set()
        try:
            return await self._scripts.get(call.model, self.default)(request, call)
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the peer closes; close() cancels it too.
            if not self._closing and not call.cut_by_upstream:
                call._mark_closed_by_peer()
            raise
        except ConnectionError:
            # A write found the connection closed (or reset) by the peer.
            call._mark_closed_by_peer()
            return DetachedResponse()
        finally:
            self._handlers.discard(task)
            call.finished.set()


def _parse_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
