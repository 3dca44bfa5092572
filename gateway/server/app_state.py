"""Typed application state keys: everything an app holds lives behind one of these."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from gateway.observability import Metrics, RequestRecord
from gateway.providers import Provider
from gateway.redaction import Redactor
from gateway.routing import Router
from gateway.server.auth import GatewayKeys
from gateway.settings import GatewaySettings
from gateway.state import StateStore
from gateway.streaming import Context
from gateway.tracing import RequestTrace, Tracing

__all__ = [
    "GATEWAY_KEYS",
    "METRICS",
    "PROVIDERS",
    "RECORD",
    "REDACTOR",
    "REQUEST_TRACE",
    "ROUTER",
    "SERVER_CONTEXT",
    "SETTINGS",
    "STORE",
    "TRACING",
]

SETTINGS = web.AppKey("settings", GatewaySettings)
PROVIDERS = web.AppKey("providers", Mapping[str, Provider])
ROUTER = web.AppKey("router", Router)
#: The parent of every request's context while the app runs: cancelling it (for example with
#: `ServerShutdown()`) ends every in-flight request through its normal error channel.
SERVER_CONTEXT = web.AppKey("server_context", Context)
#: The gateway keys clients must present (empty: no key needed).
GATEWAY_KEYS = web.AppKey("gateway_keys", GatewayKeys)
#: The state store: admission (relayed requests in flight, overall and per gateway key,
#: `gateway.server.admission`) and the backends' slots and circuits (the router's targets).
#: Subscripted rather than given the type: mypy takes no protocol where a class is expected.
STORE = web.AppKey[StateStore]("store")
#: The app's Prometheus metrics (one registry per app).
METRICS = web.AppKey("metrics", Metrics)
#: Every secret the app holds, kept out of what it relays (`gateway.redaction`).
REDACTOR = web.AppKey("redactor", Redactor)
#: The record of a relayed request, set by its handler: admission charges the tokens its calls
#: reported to the key's lease when the handler returns.
RECORD = web.RequestKey("record", RequestRecord)
#: The app's tracer (`tracing.enabled`; absent when off), built at start-up
#: (`gateway.server.tracing`).
TRACING = web.AppKey("tracing", Tracing)
#: The span of a relayed request, while tracing: its relay's chain is observed through it.
REQUEST_TRACE = web.RequestKey("request_trace", RequestTrace)
