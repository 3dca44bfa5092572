"""The app's state store: which one serves (`build_store`), what it says at start-up, and how
a shared store's Redis calls reach the metrics.

With `state.redis_url` the app builds a `RedisStore` (`gateway.state.redis_store`): the keys'
limits, the circuits and the response owners are shared by every replica on that Redis; else a
`MemoryStore`, and they are this process's own. A serving worker logs one `state_store` line
saying which (`announce_store`; Redis by host, port and database: never the URL, which may
hold a password). A shared
store's calls are reported to `gateway_redis_call_seconds`, `gateway_redis_errors` and
`gateway_state_fallbacks` (`StoreMetrics`), and with tracing are spans of the requests that made
them (`gateway.server.tracing`); the app closes a store it built when it stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from gateway.observability import Metrics
from gateway.server.app_state import METRICS, SETTINGS, STORE
from gateway.server.tracing import observed_store
from gateway.settings import GatewaySettings
from gateway.state import MemoryStore, StateStore

if TYPE_CHECKING:
    from gateway.state.redis_link import RedisObserver

__all__ = ["StoreMetrics", "announce_store", "build_store", "store_lifecycle"]

_log = structlog.get_logger("gateway.state")


@runtime_checkable
class _Observed(Protocol):
    """A store that reports its Redis calls (`RedisStore.observe`)."""

    def observe(self, observer: RedisObserver) -> None: ...


@runtime_checkable
class _Closing(Protocol):
    async def aclose(self) -> None: ...


class StoreMetrics:
    """A `RedisObserver` that counts in the app's metrics (operations: a closed set)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def redis_call(self, operation: str, seconds: float) -> None:
        self._metrics.child(self._metrics.redis_call, operation).observe(seconds)

    def redis_error(self, operation: str) -> None:
        self._metrics.child(self._metrics.redis_errors, operation).inc()

    def fallback(self, operation: str) -> None:
        self._metrics.child(self._metrics.state_fallbacks, operation).inc()


def build_store(settings: GatewaySettings) -> StateStore:
    """The store `settings` ask for: shared through Redis, or this process's own."""
    state = settings.state
    if state.redis_url is None:
        return MemoryStore(
            max_streams=settings.limits.max_streams,
            max_responses=state.max_responses,
            response_ttl=state.response_ttl,
            **_resume(settings),
        )
    from gateway.state.redis_store import RedisStore, redis_client  # redis only when asked

    return RedisStore(
        redis_client(state.redis_url.get_secret_value(), timeout=state.redis_timeout),
        max_streams=settings.limits.max_streams,
        max_responses=state.max_responses,
        response_ttl=state.response_ttl,
        timeout=state.redis_timeout,
        on_error=state.on_error,
        prefix=state.redis_prefix,
        **_resume(settings),
    )


def _resume(settings: GatewaySettings) -> dict[str, Any]:
    """How long and how much of each resumable stream a store keeps."""
    return {
        "resume_ttl": settings.state.resume_ttl,
        "max_resume_events": settings.limits.max_resume_events,
        "max_resume_bytes": settings.limits.max_resume_bytes,
    }


def store_lifecycle(owned: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    """The app's `cleanup_ctx` of its store: observed from start-up on; closed at the end when
    the app built it (`owned`)."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        store = app[STORE]
        if isinstance(store, _Observed):
            store.observe(observed_store(app, StoreMetrics(app[METRICS])))
        yield
        if owned and isinstance(store, _Closing):
            await store.aclose()

    return lifecycle


def announce_store(app: web.Application) -> None:
    """Log which store serves `app`: shared through Redis, or this process's own."""
    store, settings = app[STORE], app[SETTINGS]
    url = settings.state.redis_url
    if isinstance(store, MemoryStore) or url is None:
        _log.info(
            "state_store",
            store=type(store).__name__,
            shared=False,
            note="limits, circuits and response owners are per process",
        )
        return
    parts = urlsplit(url.get_secret_value())
    if parts.scheme == "unix":
        where = parts.path
    else:
        where = f"{parts.hostname}:{parts.port or 6379}/{parts.path.lstrip('/') or '0'}"
    _log.info(
        "state_store",
        store=type(store).__name__,
        shared=True,
        redis=where,
        on_error=settings.state.on_error,
        note="keys' limits, circuits and response owners are shared through Redis; "
        "limits.max_streams and targets' max_streams are per process",
    )
