"""openai-python's newest 1.x, newest 2.x and the current major (the project's `.venv`) see the
same gateway: whole answers on chat and responses, streamed and not; status-specific
exceptions before the first byte; an `APIError` - never a completed stream - when the mock cuts
an answer; embeddings as floats and as base64.

Each major runs `tests/clients/openai_matrix.py` in its own python (a subprocess, against the
built-in mock on 127.0.0.1) and the test asserts what it prints. The older majors live in
`.venv-clients/openai-N`, installed by `.ci/install-openai-matrix`; without them their tests
skip with that command - except where `SSE_GATEWAY_REQUIRE_OPENAI_MATRIX_TEST=1` (CI sets it),
where they fail.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import RunningGateway, StartGateway
from tests.support.client_process import run_json_client

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "clients" / "openai_matrix.py"
VENVS = ROOT / ".venv-clients"
FAST_MOCK = {"mock": {"kind": "mock", "mock": {"chunk_delay": 0}}}
MOCK_ANSWER = (
    "Hello! This is the sse-gateway mock provider, streaming one word at a time. You said: hi there"
)
MOCK_CUT_TEXT = " ".join(MOCK_ANSWER.split()[:5])  # mock-cut sends five words
MAJORS = [
    pytest.param("1", id="openai-1"),
    pytest.param("2", id="openai-2"),
    pytest.param("current", id="openai-current"),
]
#: model -> (the exception, its status, its `code`): the gateway's refusals before the first byte.
REFUSALS = {
    "mock-429": ("RateLimitError", 429, "upstream_rate_limited"),
    "mock-400": ("BadRequestError", 400, "context_length_exceeded"),
    "no-such-model": ("NotFoundError", 404, "model_not_found"),
}


@pytest.fixture(params=MAJORS)
def major(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def python(major: str) -> str:
    """The python whose openai is `major`; skips (or, in CI, fails) when it is not installed."""
    if major == "current":
        return sys.executable
    path = VENVS / f"openai-{major}" / "bin" / "python"
    if not path.exists():
        missing = f"openai {major}.x is not installed: run .ci/install-openai-matrix"
        if os.environ.get("SSE_GATEWAY_REQUIRE_OPENAI_MATRIX_TEST") == "1":
            pytest.fail(f"SSE_GATEWAY_REQUIRE_OPENAI_MATRIX_TEST=1 but {missing}")
        pytest.skip(missing)
    return str(path)


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> RunningGateway:
    """The fast mock; its circuit never opens (the 429s and cuts here are each its own case)."""
    return await start_gateway(upstreams=FAST_MOCK, circuit={"failures": 0})


async def run_client(python: str, major: str, gateway: RunningGateway, group: str) -> Any:
    """What the client printed for `group`, checked to come from the openai of `major`."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    command = (python, str(SCRIPT), gateway.base_url, group)
    async with asyncio.timeout(45):
        report = await run_json_client(*command, env=env)
    if major == "current":
        assert report["version"] == openai.__version__
    else:
        assert report["version"].split(".")[0] == major
    return report


async def test_every_major_gets_whole_answers_on_chat_and_responses(
    python: str, major: str, gateway: RunningGateway
) -> None:
    report = await run_client(python, major, gateway, "answers")

    for name in ("chat_stream", "chat_json", "responses_create_stream", "responses_stream"):
        assert "raised" not in report[name], (name, report[name])
        assert report[name]["text"] == MOCK_ANSWER, name
    assert report["chat_stream"]["finish_reason"] == "stop"
    assert report["chat_stream"]["completed"]
    assert report["chat_json"]["finish_reason"] == "stop"
    assert report["chat_json"]["completion_tokens"] == len(MOCK_ANSWER.split())
    assert report["responses_create_stream"]["last_event"] == "response.completed"
    assert report["responses_create_stream"]["completed"]
    assert report["responses_stream"]["final_text"] == MOCK_ANSWER
    assert report["responses_stream"]["status"] == "completed"


async def test_every_major_raises_the_status_specific_exception_before_the_stream(
    python: str, major: str, gateway: RunningGateway
) -> None:
    report = await run_client(python, major, gateway, "errors")

    for model, (exception, status, code) in REFUSALS.items():
        for api in ("chat", "responses"):
            seen = report[f"{api}:{model}"]
            assert seen["raised"] == {
                "type": exception,
                "api_error": True,
                "status_error": True,
                "status": status,
                "code": code,
            }, (api, model)
            assert seen["text"] == ""
            assert not seen["completed"]


async def test_every_major_raises_api_error_on_a_cut_stream_and_never_completes(
    python: str, major: str, gateway: RunningGateway
) -> None:
    report = await run_client(python, major, gateway, "cuts")

    for name in ("chat_stream", "responses_create_stream", "responses_stream"):
        seen = report[name]
        assert not seen["completed"], (name, seen)
        assert seen["raised"]["api_error"], name
        assert not seen["raised"]["status_error"], name  # the status was a 200
        assert seen["raised"]["code"] == "upstream_truncated", name
        assert seen["text"] == MOCK_CUT_TEXT, name  # what came before the cut was streamed
    assert report["chat_stream"]["finish_reason"] is None
    assert report["responses_create_stream"]["last_event"] != "response.completed"


async def test_every_major_reads_embeddings_as_floats_and_as_base64(
    python: str, major: str, gateway: RunningGateway, client: aiohttp.ClientSession
) -> None:
    body = {"model": "mock", "input": "hi there", "dimensions": 8, "encoding_format": "float"}
    async with client.post(f"{gateway.base_url}/embeddings", json=body) as response:
        assert response.status == 200
        expected: list[float] = (await response.json())["data"][0]["embedding"]
    assert len(expected) == 8

    report = await run_client(python, major, gateway, "embeddings")

    assert report["float"]["as_given"] == "list"
    assert report["float"]["embedding"] == expected
    assert report["base64"]["as_given"] == "str"  # asked for base64: the SDK leaves it encoded
    assert report["default"]["as_given"] == "list"  # the SDK asked for base64 and decoded it
    for name in ("base64", "default"):
        got = report[name]["embedding"]
        assert len(got) == len(expected), name
        assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(got, expected, strict=True))
    for name in ("float", "base64", "default"):
        assert "raised" not in report[name], (name, report[name])
        assert report[name]["prompt_tokens"] == 2
