"""An upstream event that is not valid UTF-8, seen through the official SDKs.

Relayed as it is, such an event makes `openai` and `anthropic` raise `UnicodeDecodeError` from
inside their stream iterators (the first test shows it, with no gateway in between). Through the
gateway the stream ends at that event with one `upstream_protocol_error` error event, which each
SDK raises as its typed API error after the text that came before; an upstream whose first event
is bad gets a 502 instead. Never a `UnicodeDecodeError`, never a stream that looks complete.
"""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.conftest import RunningGateway, StartGateway
from tests.support import anthropic_wire as claude
from tests.support import fake_upstream as fake
from tests.support.anthropic_gateway import CLAUDE, MESSAGES, anthropic_routes
from tests.support.fake_upstream import FakeUpstream

MODEL = "m"
KEY = "sk-client"
OPENAI_CHUNKS = fake.openai_chunks(["Hel", "lo", "!"], finish_reason="stop")
#: The second chunk's text with a byte that is no UTF-8 (a Latin-1 e acute).
BAD_OPENAI_CHUNK = OPENAI_CHUNKS[1].replace(b'"lo"', b'"l\xe9"')
MESSAGES_TEXT = ["The ", "fox"]


async def openai_text(base_url: str, into: list[str]) -> None:
    """Stream `MODEL` with the OpenAI SDK, appending each piece of text to `into`."""
    async with openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                into.append(chunk.choices[0].delta.content)


async def test_without_the_gateway_the_openai_sdk_crashes_on_the_bytes(
    upstream: FakeUpstream,
) -> None:
    upstream.script(MODEL, fake.sse_stream([OPENAI_CHUNKS[0], BAD_OPENAI_CHUNK, OPENAI_CHUNKS[2]]))

    with pytest.raises(UnicodeDecodeError):
        await openai_text(upstream.base_url, [])


async def test_openai_sdk_raises_api_error_after_the_text_before_the_bad_event(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(upstream, models=(MODEL,), heartbeat=None)
    chunks = [OPENAI_CHUNKS[0], BAD_OPENAI_CHUNK, *OPENAI_CHUNKS[2:]]
    upstream.script(MODEL, fake.sse_stream(chunks))
    text: list[str] = []

    with pytest.raises(openai.APIError) as caught:
        await openai_text(gw.base_url, text)

    assert not isinstance(caught.value, openai.APIStatusError)  # a mid-stream error event
    assert caught.value.code == "upstream_protocol_error"
    assert "UTF-8" in caught.value.message
    assert text == ["Hel"]  # nothing after the bad event, and it says the stream was cut


async def test_openai_sdk_gets_502_when_the_first_event_is_not_utf8(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(upstream, models=(MODEL,), heartbeat=None)
    bad_first = OPENAI_CHUNKS[0].replace(b'"Hel"', b'"H\xffl"')
    upstream.script(MODEL, fake.sse_stream([bad_first, *OPENAI_CHUNKS[1:]]))

    with pytest.raises(openai.APIStatusError) as caught:
        await openai_text(gw.base_url, [])

    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_protocol_error"


async def anthropic_text(url: str, into: list[str]) -> None:
    """Stream `CLAUDE` with the Anthropic SDK, appending each piece of text to `into`."""
    async with (
        anthropic.AsyncAnthropic(base_url=url, api_key=KEY, max_retries=0) as sdk,
        sdk.messages.stream(model=CLAUDE, max_tokens=64, messages=MESSAGES) as stream,
    ):
        async for piece in stream.text_stream:
            into.append(piece)


@pytest.fixture
async def claude_gateway(upstream: FakeUpstream, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(None, **anthropic_routes(upstream), heartbeat=None)


async def test_anthropic_sdk_raises_api_status_error_after_the_text_before_the_bad_event(
    upstream: FakeUpstream, claude_gateway: RunningGateway
) -> None:
    events = claude.anthropic_events(MESSAGES_TEXT)
    [bad] = [index for index, event in enumerate(events) if b'"fox"' in event]
    events[bad] = events[bad].replace(b'"fox"', b'"f\xc3x"')  # a truncated 2-byte sequence
    upstream.script(CLAUDE, fake.sse_stream(events, done=False))
    text: list[str] = []

    with pytest.raises(anthropic.APIStatusError) as caught:
        await anthropic_text(claude_gateway.url, text)

    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    assert "UTF-8" in body["error"]["message"]
    assert text == ["The "]
