"""`Tracing`: the app's tracer provider, its OTLP exporter and sampler, built once per process.

One `Tracing` per app (per worker process with `workers: N`: each builds its own at start-up,
after the fork), never the OpenTelemetry global provider: an SDK used in the same process (the
`anthropic` client instruments itself) and other apps in a test process keep theirs. Spans go
to a `BatchSpanProcessor` - exported by its own thread, in batches, off the event loop - and
from there to `tracing.endpoint` over OTLP/HTTP (protobuf) with `tracing.headers`; `aclose()`
exports what is queued and stops the thread (the app's shutdown). The sampler is parent-based:
a client's `traceparent` decides for its own trace, `sample_ratio` for the new ones.
"""

from __future__ import annotations

import asyncio

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from gateway.settings import TracingSettings

__all__ = ["Tracing"]

#: Seconds an export may take (retries included): bounds the flush at shutdown too.
EXPORT_TIMEOUT = 5.0


class Tracing:
    """The app's tracer, exporting to the settings' collector (or to `exporter`: tests)."""

    def __init__(self, settings: TracingSettings, exporter: SpanExporter | None = None) -> None:
        if exporter is None:
            exporter = OTLPSpanExporter(
                endpoint=str(settings.endpoint),
                headers={
                    name: value.get_secret_value() for name, value in settings.headers.items()
                },
                timeout=EXPORT_TIMEOUT,
            )
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}),
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
        )
        self._provider.add_span_processor(
            BatchSpanProcessor(exporter, export_timeout_millis=EXPORT_TIMEOUT * 1000)
        )
        self.tracer: trace.Tracer = self._provider.get_tracer("sse-gateway")
        #: Whether prompts are recorded on the request's span (`tracing.record_content`).
        self.record_content = settings.record_content

    async def flush(self) -> None:
        """Export every span ended so far (waits, off the event loop, for the export)."""
        await asyncio.to_thread(self._provider.force_flush)

    async def aclose(self) -> None:
        """Export what is queued, then stop exporting (once, at shutdown)."""
        await asyncio.to_thread(self._provider.shutdown)
