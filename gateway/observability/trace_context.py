"""W3C trace context on its way upstream, and the trace id on the log lines.

`UPSTREAM_TRACE` holds the `traceparent` (and `tracestate`) headers the current task's next
upstream call carries: with tracing on, those of the upstream call's own span (set as each call
starts, `gateway.tracing`); with tracing off, the client's own, passed on unchanged when they
are well formed (`client_trace`) - what a proxy that does not trace does. Unset (None): no
trace header is sent, none is ever invented. The HTTP providers add it to every call
(`gateway.providers.http`); it is per task (a `ContextVar`), so one request's context never
reaches another's calls.

`add_trace_id` is the structlog processor that puts the active span's `trace_id` (and
`span_id`) on every line written while a span is active: the request's lines, when traced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace

__all__ = ["UPSTREAM_TRACE", "add_trace_id", "client_trace"]

#: The trace headers of the current task's upstream calls (None: send none).
UPSTREAM_TRACE: ContextVar[Mapping[str, str] | None] = ContextVar("upstream_trace", default=None)

#: version-traceid-parentid-flags (W3C Trace Context, level 1); a later version may append
#: fields after a dash. All-zero ids and version ff are invalid.
_TRACEPARENT = re.compile(
    r"(?!ff)(?P<version>[0-9a-f]{2})-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}"
    r"(?P<rest>-[^\s]*)?"
)
_MAX_TRACESTATE = 512  # what the W3C asks every vendor to propagate at least


def client_trace(headers: Mapping[str, str]) -> dict[str, str] | None:
    """The client's `traceparent` and `tracestate`, to pass upstream as they came; None when
    it sent no valid `traceparent` (a `tracestate` alone means nothing)."""
    parent = headers.get("traceparent")
    if parent is None:
        return None
    match = _TRACEPARENT.fullmatch(parent)
    if match is None or (match["version"] == "00" and match["rest"]):
        return None
    carried = {"traceparent": parent}
    state = headers.get("tracestate")
    if state and len(state) <= _MAX_TRACESTATE:
        carried["tracestate"] = state
    return carried


def add_trace_id(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: the active span's `trace_id` and `span_id` (lowercase hex, as
    in `traceparent`) on the line, when a recorded span is active."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict
