"""A browser's `EventSource` reconnecting to a resumable stream with `Last-Event-ID`, in
headless Chromium.

A stream is started resumable through the gateway (its first client leaves after one event).
The page, served by a tiny aiohttp server that also passes `/events` on to the gateway's
`GET /v1/streams/{id}` (same origin: no CORS), reads it with `EventSource`; that server cuts
the browser's first connection after three events, as a dropped network would. Chromium
reconnects by itself, sending the id of the last event it got as `Last-Event-ID`; the gateway
replays what came after it, and the page's text is the whole answer, each event once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.browser.chromium import Chromium, chromium_command
from tests.conftest import StartGateway
from tests.server.test_resumable_streams import CHAT, WORDS
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream
from tests.support.openai_wire import openai_chunks

PAGE = """<!doctype html>
<html><head><title>resume</title></head><body>
<script>
function readStream() {
  return new Promise((resolve) => {
    let text = "", events = 0, errors = 0;
    const source = new EventSource("/events");
    source.onmessage = (message) => {
      if (message.data === "[DONE]") {
        source.close();
        resolve({text, events, errors, lastEventId: message.lastEventId});
        return;
      }
      events += 1;
      const choice = JSON.parse(message.data).choices[0];
      text += (choice && choice.delta && choice.delta.content) || "";
    };
    source.onerror = () => { errors += 1; };  // it reconnects by itself
  });
}
</script>
</body></html>
"""


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Chromium]:
    chromium_command()
    chromium = await Chromium.start(tmp_path / "profile")
    try:
        yield chromium
    finally:
        await chromium.aclose()


async def test_event_source_reconnects_with_last_event_id_and_reads_each_event_once(
    browser: Chromium, start_gateway: StartGateway, upstream: FakeUpstream
) -> None:
    upstream.script("m", fake.sse_stream(openai_chunks(WORDS), delay=0.05))
    gateway = await start_gateway(upstream, ("m",))
    async with aiohttp.ClientSession() as session:
        url = f"{gateway.url}/v1/chat/completions"
        headers = {"x-gateway-resumable": "true"}
        async with session.post(url, json=CHAT, headers=headers) as reply:
            stream_id = reply.headers["x-gateway-stream-id"]
            await reply.content.readuntil(b"\n\n")  # and the first client is gone

        asked: list[str | None] = []

        async def events(request: web.Request) -> web.StreamResponse:
            """`/events`: the gateway's stream, the first connection cut after 3 events."""
            last = request.headers.get("Last-Event-ID")
            asked.append(last)
            forwarded = {"Last-Event-ID": last} if last else {}
            target = f"{gateway.url}/v1/streams/{stream_id}"
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            async with session.get(target, headers=forwarded) as upstream_reply:
                sent = 0
                while True:
                    try:
                        block = await upstream_reply.content.readuntil(b"\n\n")
                    except aiohttp.client_exceptions.ContentLengthError:
                        break
                    if not block:
                        break
                    await response.write(block)
                    sent += 1
                    if len(asked) == 1 and sent == 3:
                        assert request.transport is not None
                        request.transport.abort()  # the network dropped
                        return response
            await response.write_eof()
            return response

        async def page(request: web.Request) -> web.Response:
            return web.Response(text=PAGE, content_type="text/html")

        app = web.Application()
        app.router.add_get("/", page)
        app.router.add_get("/events", events)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        try:
            await site.start()
            tab = await browser.open(f"http://127.0.0.1:{site.port}/")
            result = await tab.evaluate("readStream()")
        finally:
            await runner.cleanup()

    assert asked[0] is None
    assert asked[1] == "3"  # Chromium's own reconnect, after the third event's id
    assert result["errors"] >= 1
    assert result["events"] == len(WORDS) + 1  # every chunk once (the finish chunk too)
    assert result["text"] == "".join(WORDS)
    assert result["lastEventId"] == str(len(WORDS) + 2)
    assert json.dumps(result)
