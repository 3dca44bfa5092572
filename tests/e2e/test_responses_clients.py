"""`POST /v1/responses` as the other clients that speak it see it: the OpenAI Agents SDK
(`Runner.run_streamed` with an `OpenAIResponsesModel`), LangChain's `ChatOpenAI` with
`use_responses_api=True`, and the Vercel AI SDK under Node (`streamText` with `openai(model)`,
which calls the Responses API).

Each client, in front of the built-in mock and in front of the fake upstream (an `openai`-kind
target), gets a good stream's whole text, and reports a cut stream as a failure - never as a
completed answer. Clients never retry (`max_retries=0` / `maxRetries: 0`).

The Node client is `tests/node/stream_text.mjs`, with its packages pinned in
`tests/node/package-lock.json`; `.ci/install-node-clients` installs them (`npm ci`) before the
tests. Without them the Node tests skip with the reason - except where
`SSE_GATEWAY_REQUIRE_NODE_TEST=1` (CI sets it), where they fail.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from agents import Agent, OpenAIResponsesModel, RunConfig, Runner
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI

from tests.conftest import RunningGateway, StartGateway
from tests.support import fake_upstream as fake
from tests.support import responses_wire as wire
from tests.support.client_process import run_json_client
from tests.support.fake_upstream import FakeUpstream

WORDS = ["The ", "quick ", "brown ", "fox ", "jumps."]
EVENTS = wire.responses_events(WORDS)
PREAMBLE = 4  # events before the first text delta
MOCK_ANSWER = (
    "Hello! This is the sse-gateway mock provider, streaming one word at a time. You said: hi there"
)
#: Model names in front of the fake upstream: one good, one cut (FIN) after two text deltas.
GOOD, CUT = "good", "cut"
CUT_TEXT = "".join(WORDS[:2])
MOCK_CUT_TEXT = " ".join(MOCK_ANSWER.split()[:5])  # mock-cut sends five words
NODE_DIR = Path(__file__).resolve().parents[1] / "node"


@pytest.fixture
async def mock_gateway(start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(upstreams={"mock": {"kind": "mock", "mock": {"chunk_delay": 0}}})


@pytest.fixture
async def fake_gateway(upstream: FakeUpstream, start_gateway: StartGateway) -> RunningGateway:
    upstream.script(GOOD, fake.sse_stream(EVENTS, done=False))
    upstream.script(CUT, fake.cut_fin(PREAMBLE + 2, chunked=True, chunks=EVENTS))
    return await start_gateway(upstream, models=(GOOD, CUT))


#: (gateway fixture, model, the text a good stream gives / the prefix a cut one relayed first)
GOOD_CASES = [
    pytest.param("mock_gateway", "mock", MOCK_ANSWER, id="mock"),
    pytest.param("fake_gateway", GOOD, "".join(WORDS), id="fake-upstream"),
]
CUT_CASES = [
    pytest.param("mock_gateway", "mock-cut", MOCK_CUT_TEXT, id="mock-cut"),
    pytest.param("mock_gateway", "mock-reset", MOCK_CUT_TEXT, id="mock-reset"),
    pytest.param("fake_gateway", CUT, CUT_TEXT, id="fake-upstream-fin"),
]


@pytest.fixture
def gateway(request: pytest.FixtureRequest, gateway_name: str) -> RunningGateway:
    gw: RunningGateway = request.getfixturevalue(gateway_name)
    return gw


def assert_called_responses(request: pytest.FixtureRequest, gateway_name: str) -> None:
    """In front of the fake upstream: the client's call reached the upstream's /responses."""
    if gateway_name == "fake_gateway":
        upstream: FakeUpstream = request.getfixturevalue("upstream")
        assert upstream.requests
        assert {call.path for call in upstream.requests} == {"/v1/responses"}


# --- the OpenAI Agents SDK ---------------------------------------------------------------------


@pytest.fixture
async def agents_client(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key="x", max_retries=0) as c:
        yield c


async def run_agent(client: openai.AsyncOpenAI, model: str, events: list[Any]) -> Any:
    agent = Agent(
        name="assistant",
        instructions="Answer briefly.",
        model=OpenAIResponsesModel(model=model, openai_client=client),
    )
    result = Runner.run_streamed(agent, "hi there", run_config=RunConfig(tracing_disabled=True))
    async for event in result.stream_events():
        events.append(event)
    return result


def raw_types(events: list[Any]) -> list[str]:
    return [event.data.type for event in events if event.type == "raw_response_event"]


def raw_text(events: list[Any]) -> str:
    return "".join(
        event.data.delta
        for event in events
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta"
    )


@pytest.mark.parametrize(("gateway_name", "model", "text"), GOOD_CASES)
async def test_agents_sdk_run_streamed_gives_the_whole_answer(
    request: pytest.FixtureRequest,
    agents_client: openai.AsyncOpenAI,
    gateway_name: str,
    model: str,
    text: str,
) -> None:
    events: list[Any] = []
    result = await run_agent(agents_client, model, events)

    assert result.is_complete
    assert result.final_output == text
    assert raw_text(events) == text
    assert raw_types(events)[-1] == "response.completed"
    assert_called_responses(request, gateway_name)


@pytest.mark.parametrize(("gateway_name", "model", "prefix"), CUT_CASES)
async def test_agents_sdk_run_streamed_raises_on_a_cut_stream(
    request: pytest.FixtureRequest,
    agents_client: openai.AsyncOpenAI,
    gateway_name: str,
    model: str,
    prefix: str,
) -> None:
    events: list[Any] = []
    with pytest.raises(openai.APIError) as raised:
        await run_agent(agents_client, model, events)

    assert not isinstance(raised.value, openai.APIStatusError)
    assert raised.value.code in ("upstream_truncated", "connection_reset")
    assert raw_text(events) == prefix  # what came before the cut was streamed
    assert "response.completed" not in raw_types(events)
    assert_called_responses(request, gateway_name)


# --- LangChain ---------------------------------------------------------------------------------


def chat_model(gateway: RunningGateway, model: str) -> ChatOpenAI:
    return ChatOpenAI(
        model=model,
        base_url=gateway.base_url,
        api_key=lambda: "x",
        use_responses_api=True,
        max_retries=0,
        streaming=True,
    )


async def langchain_stream(llm: ChatOpenAI, chunks: list[AIMessageChunk]) -> AIMessageChunk:
    async for chunk in llm.astream("hi there"):
        assert isinstance(chunk, AIMessageChunk)
        chunks.append(chunk)
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole = whole + chunk
    return whole


@pytest.mark.parametrize(("gateway_name", "model", "text"), GOOD_CASES)
async def test_langchain_responses_stream_gives_the_whole_answer_and_usage(
    request: pytest.FixtureRequest,
    gateway: RunningGateway,
    gateway_name: str,
    model: str,
    text: str,
) -> None:
    whole = await langchain_stream(chat_model(gateway, model), [])

    assert whole.text == text
    assert whole.response_metadata["status"] == "completed"
    assert whole.usage_metadata is not None
    assert whole.usage_metadata["output_tokens"] == len(text.split())
    assert_called_responses(request, gateway_name)


@pytest.mark.parametrize(("gateway_name", "model", "text"), GOOD_CASES)
async def test_langchain_responses_invoke_gives_the_whole_answer(
    gateway: RunningGateway, gateway_name: str, model: str, text: str
) -> None:
    message = await chat_model(gateway, model).ainvoke("hi there")

    assert message.text == text
    assert message.response_metadata["status"] == "completed"


@pytest.mark.parametrize(("gateway_name", "model", "prefix"), CUT_CASES)
async def test_langchain_responses_stream_raises_on_a_cut_stream(
    request: pytest.FixtureRequest,
    gateway: RunningGateway,
    gateway_name: str,
    model: str,
    prefix: str,
) -> None:
    chunks: list[AIMessageChunk] = []
    with pytest.raises(openai.APIError) as raised:
        await langchain_stream(chat_model(gateway, model), chunks)

    assert not isinstance(raised.value, openai.APIStatusError)
    assert "".join(chunk.text for chunk in chunks) == prefix
    assert all(chunk.response_metadata.get("status") != "completed" for chunk in chunks)
    assert_called_responses(request, gateway_name)


# --- the Vercel AI SDK (Node) ------------------------------------------------------------------


def node_client() -> list[str]:
    """The command that runs the Node client; skips (or, in CI, fails) when it cannot run."""
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not installed (Debian package nodejs)"
    elif not (NODE_DIR / "node_modules" / "ai").is_dir():
        missing = f"the npm packages are not installed: run `npm ci` in {NODE_DIR}"
    if missing is not None:
        if os.environ.get("SSE_GATEWAY_REQUIRE_NODE_TEST") == "1":
            pytest.fail(f"SSE_GATEWAY_REQUIRE_NODE_TEST=1 but {missing}")
        pytest.skip(missing)
    assert node is not None
    return [node, str(NODE_DIR / "stream_text.mjs")]


async def vercel_stream_text(gateway: RunningGateway, model: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        report: dict[str, Any] = await run_json_client(
            *node_client(), gateway.base_url, model, cwd=NODE_DIR
        )
    return report


@pytest.mark.parametrize(("gateway_name", "model", "text"), GOOD_CASES)
async def test_vercel_ai_sdk_stream_text_gives_the_whole_answer(
    request: pytest.FixtureRequest,
    gateway: RunningGateway,
    gateway_name: str,
    model: str,
    text: str,
) -> None:
    report = await vercel_stream_text(gateway, model)

    assert report["errors"] == []
    assert report["text"] == text
    assert report["finishReason"] == "stop"
    assert report["parts"][-1] == "finish"
    assert_called_responses(request, gateway_name)


@pytest.mark.parametrize(("gateway_name", "model", "prefix"), CUT_CASES)
async def test_vercel_ai_sdk_stream_text_reports_a_cut_stream_as_an_error(
    request: pytest.FixtureRequest,
    gateway: RunningGateway,
    gateway_name: str,
    model: str,
    prefix: str,
) -> None:
    report = await vercel_stream_text(gateway, model)

    assert report["finishReason"] != "stop"
    assert "error" in report["parts"]
    assert report["errors"]
    assert any(
        phrase in message
        for message in report["errors"]
        for phrase in ("before the answer was complete", "reset")
    ), report["errors"]
    assert report["text"] == prefix
    assert_called_responses(request, gateway_name)
