"""Upstreams that echo the key the gateway sent them: no fragment of it reaches a client.

The fake upstream reads the credential it received (`Authorization: Bearer ...` or
`x-api-key`) and plants it, whole and in pieces (without its prefix, its last characters),
wherever an upstream can put text: a content delta, a mid-stream error event, a non-streaming
answer, a 400's `message`, `code` and `param`. The real `openai` and `anthropic` SDKs are the
clients; raw bytes are checked too. Streams keep their framing and valid JSON, and each
redaction is counted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web

from gateway.redaction import MIN_FRAGMENT
from tests.conftest import RunningGateway, StartGateway
from tests.observability.scrape import finished, value
from tests.support import anthropic_wire as claude
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream, UpstreamCall
from tests.support.openai_wire import chunk_event, openai_error

#: (prefix, body) of each key: the prefix names a kind of key, the body is the secret.
KEYS = {
    "openai": ("sk-proj-", "Hq3Zt8Wm2Rv6Kp1Ns4Yx7Lb9" * 3),
    "anthropic": ("sk-ant-api03-", "Ta5Ue6Vf7Wg8Xh9Yi0Zj1Ak2" * 3 + "-QQ"),
}
OPENAI_KEY, ANTHROPIC_KEY = ("".join(parts) for parts in KEYS.values())
CHAT, CLAUDE = "echo-chat", "echo-claude"


def sent_key(call: UpstreamCall) -> str:
    """The credential the gateway sent this upstream, as it arrived."""
    bearer = call.headers.get("Authorization", "")
    return bearer.removeprefix("Bearer ") or call.headers.get("x-api-key", "")


def forms(key: str) -> list[str]:
    """The key as a careless upstream echoes it: whole, without its prefix, its last
    characters, and a piece across its prefix and body."""
    prefix, body = next(parts for parts in KEYS.values() if "".join(parts) == key)
    return [key, body, key[-12:], key[len(prefix) - 3 : len(prefix) + MIN_FRAGMENT + 2]]


def leaks(text: str) -> list[str]:
    """Every window of MIN_FRAGMENT characters of either key's body found in `text`."""
    found = []
    for _prefix, body in KEYS.values():
        for start in range(len(body) - MIN_FRAGMENT + 1):
            if body[start : start + MIN_FRAGMENT] in text:
                found.append(body[start : start + MIN_FRAGMENT])
    return found


def echoing(make: Callable[[str], fake.Behaviour]) -> fake.Behaviour:
    """A behaviour built from the key of the call it answers."""

    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        return await make(sent_key(call))(request, call)

    return behave


def openai_echo_stream(key: str) -> fake.Behaviour:
    text = " / ".join(forms(key))
    chunks = [
        chunk_event({"role": "assistant", "content": ""}, None, CHAT, "c1"),
        chunk_event({"content": f"your key: {text}"}, None, CHAT, "c1"),
        chunk_event({}, "stop", CHAT, "c1"),
    ]
    return fake.sse_stream(chunks)


def openai_midstream_error(key: str) -> fake.Behaviour:
    error = b"data: " + json.dumps({"error": {"message": f"midstream Bearer {key}"}}).encode()
    return fake.sse_stream(
        [chunk_event({"content": "Hi"}, None, CHAT, "c1"), error + b"\n\n"], done=False
    )


def openai_bad_request(key: str) -> fake.Behaviour:
    message = f"no such key {key.removeprefix('sk-proj-')}"
    return fake.status(400, body=openai_error(message, code=key[-12:], param=key))


def anthropic_echo_stream(key: str) -> fake.Behaviour:
    text = " / ".join(forms(key))
    return fake.sse_stream(
        claude.anthropic_events([f"x-api-key was {text}"], model=CLAUDE), done=False
    )


def anthropic_bad_request(key: str) -> fake.Behaviour:
    message = f"invalid x-api-key {key.removeprefix('sk-ant-api03-')} ({key[-10:]})"
    return fake.status(400, body=claude.anthropic_error("invalid_request_error", message))


@pytest.fixture
async def gateway(upstream: FakeUpstream, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(
        None,
        upstreams={
            "openai": {"kind": "openai", "base_url": upstream.base_url, "api_key": OPENAI_KEY},
            "claude": {
                "kind": "anthropic",
                "base_url": f"http://127.0.0.1:{upstream.port}",
                "api_key": ANTHROPIC_KEY,
            },
        },
        routes=[
            {"model": CHAT, "targets": [{"upstream": "openai"}]},
            {"model": CLAUDE, "targets": [{"upstream": "claude"}]},
        ],
        heartbeat=None,
    )


def chat_body(*, stream: bool) -> dict[str, Any]:
    return {"model": CHAT, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


async def test_a_key_echoed_in_an_openai_stream_is_redacted_for_the_sdk(
    upstream: FakeUpstream, gateway: RunningGateway
) -> None:
    upstream.script(CHAT, echoing(openai_echo_stream))
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key="client-key", max_retries=0
    ) as sdk:
        stream = await sdk.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text.startswith("your key: [redacted]")
    assert leaks(text) == []
    await finished(gateway)
    assert value(gateway, "gateway_redactions_total", where="stream") == 4


async def test_a_key_in_an_upstream_error_event_is_redacted_and_the_event_stays_json(
    upstream: FakeUpstream, gateway: RunningGateway, client: aiohttp.ClientSession
) -> None:
    upstream.script(CHAT, echoing(openai_midstream_error))
    async with client.post(
        f"{gateway.url}/v1/chat/completions", json=chat_body(stream=True)
    ) as response:
        raw = (await response.read()).decode()
    assert leaks(raw) == []
    events = [block for block in raw.split("\n\n") if block]
    error = json.loads(events[-1].removeprefix("data: "))
    assert error == {"error": {"message": "midstream Bearer [redacted]"}}


async def test_a_key_in_a_non_streaming_answer_is_redacted(
    upstream: FakeUpstream, gateway: RunningGateway, client: aiohttp.ClientSession
) -> None:
    upstream.script(CHAT, echoing(lambda key: fake.json_completion(f"key {key}", model=CHAT)))
    async with client.post(
        f"{gateway.url}/v1/chat/completions", json=chat_body(stream=False)
    ) as response:
        answer = await response.json()
    assert answer["choices"][0]["message"]["content"] == "key [redacted]"
    await finished(gateway)
    assert value(gateway, "gateway_redactions_total", where="body") == 1


async def test_a_key_in_a_400s_message_code_and_param_never_reaches_the_openai_sdk(
    upstream: FakeUpstream, gateway: RunningGateway
) -> None:
    upstream.script(CHAT, echoing(openai_bad_request))
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key="client-key", max_retries=0
    ) as sdk:
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk.chat.completions.create(
                model=CHAT, messages=[{"role": "user", "content": "hi"}]
            )
    body = json.dumps(caught.value.body)
    assert leaks(body) == []
    assert "no such key [redacted]" in body
    assert caught.value.code != OPENAI_KEY[-12:]
    assert caught.value.param is None


async def test_a_key_echoed_in_an_anthropic_stream_is_redacted_for_the_sdk(
    upstream: FakeUpstream, gateway: RunningGateway
) -> None:
    upstream.script(CLAUDE, echoing(anthropic_echo_stream))
    async with (
        anthropic.AsyncAnthropic(base_url=gateway.url, api_key="client-key", max_retries=0) as sdk,
        sdk.messages.stream(
            model=CLAUDE, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        message = await stream.get_final_message()
    text = "".join(block.text for block in message.content if block.type == "text")
    assert text.startswith("x-api-key was [redacted]")
    assert leaks(text) == []


async def test_a_key_in_an_anthropic_400_never_reaches_the_anthropic_sdk(
    upstream: FakeUpstream, gateway: RunningGateway
) -> None:
    upstream.script(CLAUDE, echoing(anthropic_bad_request))
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key="client-key", max_retries=0
    ) as sdk:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await sdk.messages.create(
                model=CLAUDE, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
            )
    body = json.dumps(caught.value.body)
    assert leaks(body) == []
    assert "invalid x-api-key [redacted] ([redacted])" in body
