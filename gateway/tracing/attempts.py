"""`TracedAttempts`: a `ChainObserver` decorator giving every upstream call its own span.

The chain reports each call to its observer (the relay); wrapped in `TracedAttempts`, each call
also becomes a CLIENT span, child of the request's span: the first call, each retry, each
failover and each continuation, numbered (`gateway.attempt`) and named for why it was made
(`gateway.attempt.reason`). As a call starts, its span's W3C context becomes the task's
`UPSTREAM_TRACE`: the upstream receives a `traceparent` whose parent is that call's span.

A call that fails ends its span with the error (status ERROR, `error.type` its code). The call
that answered keeps its span open while its answer is read: until a continuation's call starts
(the answer was cut: ERROR) or the request ends (`close`, with how the request ended). Retries,
failovers and continuations are also events on the request's span. Hooks of the chain this
decorator does not trace are the wrapped observer's, as they are.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from gateway.errors import ClientDisconnected, GatewayError
from gateway.observability import UPSTREAM_TRACE, RequestRecord
from gateway.routing import ChainObserver, Target
from gateway.tracing import semconv as sc

__all__ = ["TracedAttempts"]


class TracedAttempts:
    """The wrapped observer's hooks, each call of the chain also a span (see the module)."""

    __slots__ = (
        "_calls",
        "_client_model",
        "_inner",
        "_open",
        "_operation",
        "_parent",
        "_reason",
        "_tracer",
    )

    def __init__(
        self,
        inner: ChainObserver,
        tracer: trace.Tracer,
        parent: Span,
        operation: str,
        client_model: str,
    ) -> None:
        self._inner = inner
        self._tracer = tracer
        self._parent = parent  # the request's span
        self._operation = operation
        self._client_model = client_model
        self._open: Span | None = None  # the call being made, or whose answer is read
        self._calls = 0
        self._reason = "first"  # why the next call is made

    def __getattr__(self, name: str) -> Any:
        # Hooks not traced here are the wrapped observer's.
        return getattr(self._inner, name)

    def attempt_started(self, target: Target) -> None:
        self._inner.attempt_started(target)
        if self._open is not None:  # an answer read so far was cut: a continuation follows
            self._open.set_status(Status(StatusCode.ERROR, "the answer was cut"))
            self._open.end()
            self._reason = "continuation"
        self._calls += 1
        provider = target.provider
        model = target.upstream_model(self._client_model) if self._client_model else ""
        parent = self._parent
        span = self._tracer.start_span(
            f"{self._operation} {model}".rstrip(),
            context=trace.set_span_in_context(parent),
            kind=SpanKind.CLIENT,
            attributes={
                sc.GEN_AI_OPERATION: self._operation,
                sc.GEN_AI_PROVIDER: provider.vendor,
                sc.GEN_AI_SYSTEM: provider.vendor,
                sc.GEN_AI_REQUEST_MODEL: model,
                sc.GATEWAY_UPSTREAM: provider.name,
                sc.GATEWAY_ATTEMPT: self._calls,
                sc.GATEWAY_ATTEMPT_REASON: self._reason,
            },
        )
        self._open = span
        self._reason = "failover"  # unless the chain says it retries
        parent.set_attribute(sc.GEN_AI_PROVIDER, provider.vendor)
        parent.set_attribute(sc.GEN_AI_SYSTEM, provider.vendor)
        UPSTREAM_TRACE.set(_w3c(span))

    def attempt_failed(self, target: Target, error: GatewayError) -> None:
        self._inner.attempt_failed(target, error)
        span, self._open = self._open, None
        if span is not None:
            _set_error(span, error)
            span.end()

    def retrying(self, target: Target, error: GatewayError, delay: float) -> None:
        self._inner.retrying(target, error, delay)
        self._reason = "retry"
        self._parent.add_event(
            "upstream_retry",
            {
                sc.GATEWAY_UPSTREAM: target.provider.name,
                sc.ERROR_TYPE: error.code,
                "gateway.retry.delay": delay,
            },
        )

    def failing_over(self, target: Target, reason: str) -> None:
        self._inner.failing_over(target, reason)
        self._reason = "failover"
        self._parent.add_event(
            "upstream_failover", {sc.GATEWAY_UPSTREAM: target.provider.name, sc.ERROR_TYPE: reason}
        )

    def continuing(self, target: Target, result: str, error: GatewayError) -> None:
        self._inner.continuing(target, result, error)
        self._parent.add_event(
            "stream_continuation",
            {
                sc.GATEWAY_UPSTREAM: target.provider.name,
                "gateway.continuation.result": result,
                sc.ERROR_TYPE: error.code,
            },
        )

    def request_sent(self) -> None:
        self._inner.request_sent()

    def close(self, record: RequestRecord) -> None:
        """End the span of the call whose answer was read, as `record`'s request ended."""
        span, self._open = self._open, None
        if span is None:
            return
        if record.upstream_model:
            span.set_attribute(sc.GEN_AI_RESPONSE_MODEL, record.upstream_model)
        if record.continuations == 0:  # the request's tokens are this call's alone
            for kind, count in record.tokens.items():
                name = sc.GEN_AI_USAGE.get(kind)
                if name is not None:
                    span.set_attribute(name, count)
        error = record.error
        if error is not None and not isinstance(error, ClientDisconnected):
            _set_error(span, error)
        span.end()


def _set_error(span: Span, error: GatewayError) -> None:
    span.set_status(Status(StatusCode.ERROR, error.code))
    span.set_attribute(sc.ERROR_TYPE, error.code)
    span.set_attribute(sc.GATEWAY_ERROR_CATEGORY, error.category.value)


def _w3c(span: Span) -> dict[str, str]:
    """`span`'s context as the W3C headers of the call it stands for."""
    context = span.get_span_context()
    headers = {
        "traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-"
        f"{int(context.trace_flags):02x}"
    }
    state = context.trace_state.to_header()
    if state:
        headers["tracestate"] = state
    return headers
