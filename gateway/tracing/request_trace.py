"""`RequestTrace`: the span of one relayed request, from its head to its last byte.

The server starts it before admission (`start`): a SERVER span, child of the client's
`traceparent` when it sent a valid one, else a new trace. `context` is the OpenTelemetry
context to make current while the request is served, so that the request's Redis calls and log
lines find it. The request's chain is observed through `observe` (`TracedAttempts`: a span
per upstream call). `finish` ends the calls' spans and the request's, its attributes taken from
the request's `RequestRecord` as it was finished (the same figures as its log line and
metrics, never derived twice): GenAI semantic conventions (operation, provider, request and
response model, tokens, time to first chunk) and the gateway's own (route, upstream, outcome,
error category and code).

The span is named `{operation} {model}` (`chat gpt-4o`) once the model is known, `{method}
{route}` for a request refused before its body was read. An error that is the gateway's or an
upstream's (5xx, or a stream that ended with an error event) sets status ERROR; one that is
the client's (4xx, a client that left) does not, as HTTP server spans have it.

Prompts are recorded (`gen_ai.input.messages`, `gen_ai.system_instructions`: the client's own
fields as JSON, capped) only with `tracing.record_content`; completions never are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.errors import ClientDisconnected
from gateway.observability import RequestRecord
from gateway.routing import CallTemplate, ChainObserver
from gateway.tracing import semconv as sc
from gateway.tracing.attempts import TracedAttempts
from gateway.tracing.tracer import Tracing

__all__ = ["RequestTrace"]

_PROPAGATOR = TraceContextTextMapPropagator()
_PROMPT_FIELDS = ("messages", "input", "prompt")
_INSTRUCTION_FIELDS = ("system", "instructions")
MAX_CONTENT_CHARS = 32_768


class RequestTrace:
    """One request's span and the spans of its upstream calls (see the module)."""

    __slots__ = ("_attempts", "_record_content", "_tracer", "context", "span")

    def __init__(self, tracing: Tracing, headers: Mapping[str, str], method: str, route: str):
        """Start the request's span: `headers` are the client's (its trace context),
        `route` the path pattern served (`/v1/chat/completions`)."""
        parent = _PROPAGATOR.extract(headers)
        self._tracer = tracing.tracer
        self._record_content = tracing.record_content
        self.span: Span = self._tracer.start_span(
            f"{method} {route}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={sc.HTTP_METHOD: method, sc.HTTP_ROUTE: route},
        )
        #: The context to make current while the request is served.
        self.context: otel_context.Context = trace.set_span_in_context(self.span, parent)
        self._attempts: TracedAttempts | None = None

    def observe(
        self, observer: ChainObserver, record: RequestRecord, template: CallTemplate
    ) -> ChainObserver:
        """`observer` (the relay), each upstream call of the request also a span."""
        operation = sc.operation_of(record.endpoint)
        if self._record_content:
            self._record_prompt(template.body)
        self._attempts = TracedAttempts(
            observer, self._tracer, self.span, operation, template.model
        )
        return self._attempts

    def finish(self, record: RequestRecord | None, status: int | None) -> None:
        """End the spans: the request's described by its finished `record` (None: refused
        before it had one, `status` says how)."""
        span = self.span
        if self._attempts is not None and record is not None:
            self._attempts.close(record)
        if record is None:
            if status is not None:
                span.set_attribute(sc.HTTP_STATUS, status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            span.end()
            return
        span.set_attributes(_attributes(record, status))
        if record.model:
            span.update_name(f"{sc.operation_of(record.endpoint)} {record.model}")
        error = record.error
        if error is not None:
            span.set_attribute(sc.ERROR_TYPE, error.code)
            span.set_attribute(sc.GATEWAY_ERROR_CATEGORY, error.category.value)
            answered = record.status if record.status is not None else status
            theirs = answered is not None and 400 <= answered < 500
            if not theirs and not isinstance(error, ClientDisconnected):
                span.set_status(Status(StatusCode.ERROR, error.code))
        span.end()

    def _record_prompt(self, body: Mapping[str, Any]) -> None:
        for fields, name in (
            (_PROMPT_FIELDS, sc.GEN_AI_INPUT_MESSAGES),
            (_INSTRUCTION_FIELDS, sc.GEN_AI_SYSTEM_INSTRUCTIONS),
        ):
            for field in fields:
                if field in body:
                    text = orjson.dumps(body[field]).decode()
                    self.span.set_attribute(name, text[:MAX_CONTENT_CHARS])
                    break


def _attributes(record: RequestRecord, status: int | None) -> dict[str, Any]:
    """The request's span attributes, from its finished record."""
    attributes: dict[str, Any] = {
        sc.GEN_AI_OPERATION: sc.operation_of(record.endpoint),
        sc.GEN_AI_REQUEST_STREAM: record.stream,
        sc.GATEWAY_OUTCOME: record.outcome,
        sc.GATEWAY_REQUEST_ID: record.request_id,
        sc.GATEWAY_ATTEMPTS: record.attempts,
    }
    for name, value in (
        (sc.GEN_AI_REQUEST_MODEL, record.model),
        (sc.GEN_AI_RESPONSE_MODEL, record.upstream_model),
        (sc.GATEWAY_ROUTE, record.route),
        (sc.GATEWAY_UPSTREAM, record.upstream),
        (sc.HTTP_STATUS, record.status if record.status is not None else status),
    ):
        if value is not None:
            attributes[name] = value
    if record.failovers:
        attributes[sc.GATEWAY_FAILOVERS] = record.failovers
    if record.continuations:
        attributes[sc.GATEWAY_CONTINUATIONS] = record.continuations
    for kind, count in record.tokens.items():
        usage = sc.GEN_AI_USAGE.get(kind)
        if usage is not None:
            attributes[usage] = count
    if record.stream and record.first_event_at is not None:
        attributes[sc.GEN_AI_TIME_TO_FIRST_CHUNK] = record.first_event_at - record.started
    return attributes
