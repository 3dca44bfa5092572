"""Traces, checked against a real OTLP/HTTP receiver (`tests.support.otlp_receiver`).

The real openai SDK calls the gateway, which calls the fake upstream; the gateway exports its
spans over OTLP/HTTP (protobuf) to a receiver on 127.0.0.1 that decodes them with
`opentelemetry-proto`. Each test flushes the app's exporter (`Tracing.flush`) before it reads
what was received. What is checked: one trace per request; a SERVER span per request with a
CLIENT child per upstream call (each retry and failover its own); GenAI attributes with the
values the fake's usage reported; a client's `traceparent` honoured and each upstream call
receiving a `traceparent` whose parent is its own span; no prompt or completion unless
`record_content`; with tracing off, nothing exported and no `traceparent` invented.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from gateway.server.app_state import TRACING
from tests.conftest import RunningGateway, StartGateway
from tests.observability.test_logs import lines, log_stream  # noqa: F401 - its fixture
from tests.state.conftest import redis  # noqa: F401 - the fixture of a real redis-server
from tests.support import fake_upstream as fake
from tests.support.chain_gateway import chain, route, target
from tests.support.fake_upstream import FakeUpstream
from tests.support.openai_wire import dumps
from tests.support.otlp_receiver import OTLPReceiver, ReceivedSpan
from tests.support.redis_server import RedisServer

MODEL = "fake-model"
PROMPT = "the secret recipe is 42 apples"
MESSAGES: list[Any] = [{"role": "user", "content": PROMPT}]
USAGE = {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}
ANSWER_TEXT = ["Hel", "lo", " there"]
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"


def answer(model: str = MODEL, usage: bool = True) -> list[bytes]:
    chunks = fake.openai_chunks(ANSWER_TEXT, model=model)
    if usage:
        chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1}
        chunk |= {"model": model, "choices": [], "usage": USAGE}
        chunks.append(b"data: " + dumps(chunk) + b"\n\n")
    return [*chunks, fake.DONE]


@pytest.fixture
async def otlp() -> AsyncIterator[OTLPReceiver]:
    receiver = OTLPReceiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.close()


def tracing(otlp: OTLPReceiver, **fields: Any) -> dict[str, Any]:
    return {"enabled": True, "endpoint": otlp.endpoint, **fields}


async def stream(gw: RunningGateway, model: str = MODEL, **options: Any) -> str:
    async with openai.AsyncOpenAI(base_url=gw.base_url, api_key="k", max_retries=0) as sdk:
        chunks = await sdk.chat.completions.create(
            model=model, messages=MESSAGES, stream=True, **options
        )
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])


async def exported(gw: RunningGateway, otlp: OTLPReceiver) -> list[ReceivedSpan]:
    await gw.app[TRACING].flush()
    return otlp.spans


def server_span(spans: list[ReceivedSpan]) -> ReceivedSpan:
    (span,) = [s for s in spans if s.kind == "SERVER"]
    return span


def parent_of(traceparent: str) -> tuple[str, str]:
    """(trace id, parent span id) of a `traceparent`."""
    _, trace_id, span_id, _ = traceparent.split("-")
    return trace_id, span_id


async def test_a_streamed_request_is_one_trace_a_server_span_and_a_client_span_per_call(
    start_gateway: StartGateway, upstream: FakeUpstream, otlp: OTLPReceiver
) -> None:
    upstream.script(MODEL, fake.sse_stream(answer()))
    gw = await start_gateway(upstream, (MODEL,), tracing=tracing(otlp))
    assert await stream(gw) == "Hello there"
    spans = await exported(gw, otlp)

    assert len({s.trace_id for s in spans}) == 1
    request = server_span(spans)
    assert request.parent_id == ""  # no traceparent from the client: a new trace
    assert request.name == f"chat {MODEL}"
    assert request.resource["service.name"] == "sse-gateway"
    attributes = request.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == MODEL
    assert attributes["gen_ai.response.model"] == MODEL
    assert attributes["gen_ai.usage.input_tokens"] == 12
    assert attributes["gen_ai.usage.output_tokens"] == 30
    assert attributes["gen_ai.request.stream"] is True
    assert 0 < attributes["gen_ai.response.time_to_first_chunk"] < 10
    assert attributes["gateway.route"] == MODEL
    assert attributes["gateway.upstream"] == "fake"
    assert attributes["gateway.outcome"] == "completed"
    assert attributes["http.response.status_code"] == 200
    assert request.status == "UNSET"

    (call,) = otlp.children_of(request)
    assert (call.kind, call.name, call.status) == ("CLIENT", f"chat {MODEL}", "UNSET")
    assert call.attributes["gateway.attempt"] == 1
    assert call.attributes["gateway.attempt.reason"] == "first"
    assert call.attributes["gen_ai.usage.output_tokens"] == 30
    assert request.start_ns <= call.start_ns <= call.end_ns <= request.end_ns
    # The upstream's parent is the call's span, in the request's trace.
    (received,) = upstream.calls_for(MODEL)
    assert parent_of(received.headers["traceparent"]) == (call.trace_id, call.span_id)


async def test_each_retry_and_failover_is_a_span_of_its_own_with_its_own_traceparent(
    start_gateway: StartGateway, upstream: FakeUpstream, otlp: OTLPReceiver
) -> None:
    upstream.script("primary", fake.status(503))
    upstream.script("backup", fake.sse_stream(answer("backup")))
    gw = await start_gateway(
        None,
        tracing=tracing(otlp),
        **chain(upstream, route("m", target("primary"), target("backup"))),
    )
    assert await stream(gw, "m") == "Hello there"
    spans = await exported(gw, otlp)

    assert len({s.trace_id for s in spans}) == 1
    request = server_span(spans)
    calls = otlp.children_of(request)
    reasons = [
        (c.attributes["gen_ai.request.model"], c.attributes["gateway.attempt.reason"])
        for c in calls
    ]
    assert reasons == [
        ("primary", "first"),
        ("primary", "retry"),
        ("primary", "retry"),
        ("backup", "failover"),
    ]
    assert [c.attributes["gateway.attempt"] for c in calls] == [1, 2, 3, 4]
    assert [c.status for c in calls] == ["ERROR", "ERROR", "ERROR", "UNSET"]
    assert {c.attributes.get("error.type") for c in calls[:3]} == {"upstream_status_5xx"}
    assert request.attributes["gateway.attempts"] == 4
    assert request.attributes["gateway.failovers"] == 1
    assert request.attributes["gateway.upstream"] == "fake"
    assert request.attributes["gen_ai.response.model"] == "backup"
    events = [name for name, _ in request.events]
    assert events == ["upstream_retry", "upstream_retry", "upstream_failover"]
    # Every call's upstream request names that call's span as its parent.
    received = upstream.calls_for("primary") + upstream.calls_for("backup")
    assert [parent_of(r.headers["traceparent"]) for r in received] == [
        (c.trace_id, c.span_id) for c in calls
    ]


async def test_a_clients_traceparent_is_honoured_and_its_tracestate_passed_upstream(
    start_gateway: StartGateway, upstream: FakeUpstream, otlp: OTLPReceiver
) -> None:
    upstream.script(MODEL, fake.sse_stream(answer()))
    gw = await start_gateway(upstream, (MODEL,), tracing=tracing(otlp))
    headers = {"traceparent": CLIENT_TRACEPARENT, "tracestate": "vendor=abc"}
    await stream(gw, extra_headers=headers)
    spans = await exported(gw, otlp)

    request = server_span(spans)
    assert (request.trace_id, request.parent_id) == (CLIENT_TRACE, CLIENT_SPAN)
    assert {s.trace_id for s in spans} == {CLIENT_TRACE}
    (call,) = otlp.children_of(request)
    (received,) = upstream.calls_for(MODEL)
    assert parent_of(received.headers["traceparent"]) == (CLIENT_TRACE, call.span_id)
    assert received.headers["traceparent"].endswith("-01")  # sampled, as the client said
    assert received.headers["tracestate"] == "vendor=abc"


async def test_a_client_that_samples_its_trace_out_gets_no_spans_but_a_traceparent_upstream(
    start_gateway: StartGateway, upstream: FakeUpstream, otlp: OTLPReceiver
) -> None:
    upstream.script(MODEL, fake.sse_stream(answer()))
    gw = await start_gateway(upstream, (MODEL,), tracing=tracing(otlp))
    await stream(gw, extra_headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"})
    assert await exported(gw, otlp) == []  # parent-based: the client decided
    (received,) = upstream.calls_for(MODEL)
    trace_id, parent = parent_of(received.headers["traceparent"])
    assert trace_id == CLIENT_TRACE
    assert parent != CLIENT_SPAN
    assert received.headers["traceparent"].endswith("-00")


async def test_no_prompt_or_completion_is_recorded_unless_record_content(
    start_gateway: StartGateway, upstream: FakeUpstream, otlp: OTLPReceiver
) -> None:
    upstream.script(MODEL, fake.sse_stream(answer()))
    gw = await start_gateway(upstream, (MODEL,), tracing=tracing(otlp))
    await stream(gw)
    spans = await exported(gw, otlp)
    assert spans
    everything = json.dumps([[s.attributes, s.events] for s in spans])
    assert PROMPT not in everything
    assert "there" not in everything  # the completion's text
    assert "gen_ai.input.messages" not in everything


async def test_record_content_puts_the_prompt_on_the_request_span(
    start_gateway: StartGateway, upstream: FakeUpstream, otlp: OTLPReceiver
) -> None:
    upstream.script(MODEL, fake.sse_stream(answer()))
    gw = await start_gateway(upstream, (MODEL,), tracing=tracing(otlp, record_content=True))
    await stream(gw)
    request = server_span(await exported(gw, otlp))
    assert json.loads(request.attributes["gen_ai.input.messages"]) == MESSAGES


async def test_a_cut_stream_sets_error_status_on_the_request_and_its_call(
    start_gateway: StartGateway, upstream: FakeUpstream, otlp: OTLPReceiver
) -> None:
    upstream.script(MODEL, fake.cut_fin(1, chunked=False))
    gw = await start_gateway(upstream, (MODEL,), tracing=tracing(otlp))
    with pytest.raises(openai.APIError):
        await stream(gw)
    request = server_span(await exported(gw, otlp))
    assert request.status == "ERROR"
    assert request.attributes["error.type"] == "upstream_truncated"
    assert request.attributes["gateway.outcome"] == request.attributes["gateway.error.category"]
    (call,) = otlp.children_of(request)
    assert (call.status, call.attributes["error.type"]) == ("ERROR", "upstream_truncated")


async def test_a_non_streaming_request_has_its_tokens_and_the_exporters_headers_reach_the_receiver(
    start_gateway: StartGateway, upstream: FakeUpstream, otlp: OTLPReceiver
) -> None:
    upstream.script(MODEL, fake.json_completion("Hi you two", model=MODEL))
    gw = await start_gateway(
        upstream, (MODEL,), tracing=tracing(otlp, headers={"x-collector-key": "c0llect0r"})
    )
    async with openai.AsyncOpenAI(base_url=gw.base_url, api_key="k", max_retries=0) as sdk:
        await sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
    request = server_span(await exported(gw, otlp))
    assert request.attributes["gen_ai.usage.input_tokens"] == 5
    assert request.attributes["gen_ai.usage.output_tokens"] == 3
    assert request.attributes["gen_ai.request.stream"] is False
    assert "gen_ai.response.time_to_first_chunk" not in request.attributes
    assert request.export_headers["x-collector-key"] == "c0llect0r"


async def test_with_tracing_off_nothing_is_exported_and_a_traceparent_is_passed_not_invented(
    start_gateway: StartGateway, upstream: FakeUpstream, otlp: OTLPReceiver
) -> None:
    upstream.script(MODEL, fake.sse_stream(answer()))
    gw = await start_gateway(upstream, (MODEL,), tracing={"endpoint": otlp.endpoint})
    assert TRACING not in gw.app
    await stream(gw)
    await stream(gw, extra_headers={"traceparent": CLIENT_TRACEPARENT, "tracestate": "v=1"})
    await stream(gw, extra_headers={"traceparent": "00-not-a-valid-traceparent-01"})
    plain, passed, malformed = upstream.calls_for(MODEL)
    assert "traceparent" not in plain.headers
    assert "tracestate" not in plain.headers
    assert passed.headers["traceparent"] == CLIENT_TRACEPARENT
    assert passed.headers["tracestate"] == "v=1"
    assert "traceparent" not in malformed.headers
    assert otlp.exports == 0


async def test_the_requests_log_line_carries_its_trace_id(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    otlp: OTLPReceiver,
    log_stream: io.StringIO,  # noqa: F811 - the fixture imported above
) -> None:
    upstream.script(MODEL, fake.sse_stream(answer()))
    gw = await start_gateway(upstream, (MODEL,), tracing=tracing(otlp))
    await stream(gw)
    request = server_span(await exported(gw, otlp))
    (finished,) = [line for line in lines(log_stream) if line["event"] == "stream_finished"]
    assert (finished["trace_id"], finished["span_id"]) == (request.trace_id, request.span_id)


async def test_a_requests_redis_calls_are_spans_of_its_trace(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    otlp: OTLPReceiver,
    redis: RedisServer,  # noqa: F811 - the fixture imported above
) -> None:
    upstream.script(MODEL, fake.sse_stream(answer()))
    gw = await start_gateway(
        upstream,
        (MODEL,),
        tracing=tracing(otlp),
        state={"redis_url": redis.url, "redis_prefix": "traces:"},
        auth={"keys": ["key-1"], "requests_per_minute_per_key": 100},
    )
    async with openai.AsyncOpenAI(base_url=gw.base_url, api_key="key-1", max_retries=0) as sdk:
        stream_ = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        async for _ in stream_:
            pass
    spans = await exported(gw, otlp)
    request = server_span(spans)
    (admit,) = [s for s in spans if s.name == "redis admit"]
    assert (admit.kind, admit.trace_id, admit.parent_id) == (
        "CLIENT",
        request.trace_id,
        request.span_id,
    )
    assert admit.attributes == {"db.system.name": "redis", "db.operation.name": "admit"}
    assert admit.end_ns <= request.end_ns
    assert {s.trace_id for s in spans} == {request.trace_id}


async def test_a_continued_stream_has_a_span_for_the_cut_call_and_one_for_its_continuation(
    start_gateway: StartGateway, upstream: FakeUpstream, otlp: OTLPReceiver
) -> None:
    first = fake.openai_chunks(["The ", "quick ", "brown "], finish_reason=None, model="primary")
    rest = fake.openai_chunks(["", " fox", " jumps."], model="primary", id="chatcmpl-second")
    upstream.script(
        "primary",
        fake.sequence(
            fake.cut_fin(3, chunked=True, chunks=first), fake.sse_stream(rest, done=False)
        ),
    )
    gw = await start_gateway(
        None,
        heartbeat=None,
        tracing=tracing(otlp),
        **chain(upstream, route("m", target("primary", prefill=True))),
    )
    assert await stream(gw, "m") == "The quick brown fox jumps."
    request = server_span(await exported(gw, otlp))
    cut, continued = otlp.children_of(request)
    assert [c.attributes["gateway.attempt.reason"] for c in (cut, continued)] == [
        "first",
        "continuation",
    ]
    assert (cut.status, continued.status) == ("ERROR", "UNSET")
    assert cut.end_ns <= continued.start_ns
    assert request.attributes["gateway.continuations"] == 1
    assert request.status == "UNSET"
    (event,) = [attributes for name, attributes in request.events if name == "stream_continuation"]
    assert event["gateway.continuation.result"] == "ok"
    received = upstream.calls_for("primary")
    assert [parent_of(r.headers["traceparent"])[1] for r in received] == [
        cut.span_id,
        continued.span_id,
    ]
