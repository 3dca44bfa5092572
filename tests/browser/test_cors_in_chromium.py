"""CORS as a real browser enforces it: a page on one origin streams a chat completion from the
gateway on another (both on 127.0.0.1, different ports) in headless Chromium.

The page is served by a tiny aiohttp server; its script `fetch`es `POST /v1/chat/completions`
with `stream: true` (JSON and an `Authorization` header, so Chromium sends a preflight first)
from the built-in mock and reads the SSE body chunk by chunk. From an allowed origin the page
gets the whole text - the same text a non-browser client reads - and the exposed `x-request-id`;
from any other origin the fetch fails, as it does when credentials are sent without
`cors.allow_credentials`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.browser.chromium import Chromium, chromium_command
from tests.conftest import RunningGateway, StartGateway

PAGE = """<!doctype html>
<html><head><title>cors</title></head><body>
<script>
async function streamChat(url, model, credentials) {
  try {
    const response = await fetch(url, {
      method: "POST",
      credentials,
      headers: {
        "content-type": "application/json",
        "authorization": "Bearer not-needed",
        "x-stainless-lang": "js",
      },
      body: JSON.stringify({model, stream: true, messages: [{role: "user", content: "hi"}]}),
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let raw = "";
    let reads = 0;
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      reads += 1;
      raw += decoder.decode(value, {stream: true});
    }
    return {
      status: response.status,
      text: deltas(raw),
      done: raw.includes("data: [DONE]"),
      reads,
      requestId: response.headers.get("x-request-id"),
    };
  } catch (error) {
    return {error: String(error)};
  }
}
function deltas(raw) {
  let text = "";
  for (const line of raw.split("\\n")) {
    if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
    const choice = JSON.parse(line.slice(6)).choices[0];
    text += (choice && choice.delta && choice.delta.content) || "";
  }
  return text;
}
</script>
</body></html>
"""


@pytest.fixture
async def page_origin() -> AsyncIterator[str]:
    """The origin of a server whose `/` is the page (`http://127.0.0.1:PORT`)."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    try:
        await site.start()
        yield f"http://127.0.0.1:{site.port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Chromium]:
    chromium_command()  # skip (or fail, in CI) before any server starts
    chromium = await Chromium.start(tmp_path / "profile")
    try:
        yield chromium
    finally:
        await chromium.aclose()


async def mock_gateway(start_gateway: StartGateway, **cors: Any) -> RunningGateway:
    return await start_gateway(
        upstreams={"mock": {"kind": "mock", "mock": {"chunk_delay": 0.01}}}, cors=cors
    )


async def stream_in_page(
    browser: Chromium, origin: str, gateway: RunningGateway, credentials: str = "same-origin"
) -> dict[str, Any]:
    page = await browser.open(origin + "/")
    url = gateway.url + "/v1/chat/completions"
    result: dict[str, Any] = await page.evaluate(
        f"streamChat({json.dumps(url)}, 'mock', {json.dumps(credentials)})"
    )
    return result


async def text_for_a_plain_client(gateway: RunningGateway) -> str:
    """The text of the same stream read without a browser (no Origin, no CORS)."""
    body = {"model": "mock", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    text = ""
    url = gateway.url + "/v1/chat/completions"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        async for line in response.content:
            data = line.decode().strip().removeprefix("data: ")
            if line.startswith(b"data: ") and data != "[DONE]":
                choice = json.loads(data)["choices"][0]
                text += (choice.get("delta") or {}).get("content") or ""
    return text


async def test_page_on_an_allowed_origin_streams_the_whole_answer(
    browser: Chromium, page_origin: str, start_gateway: StartGateway
) -> None:
    gateway = await mock_gateway(start_gateway, allow_origins=[page_origin])

    result = await stream_in_page(browser, page_origin, gateway)

    assert "error" not in result, result
    assert result["status"] == 200
    assert result["done"] is True
    assert result["text"] == await text_for_a_plain_client(gateway)
    assert result["text"]
    assert result["requestId"]  # exposed: a page may read it


async def test_page_on_a_subdomain_pattern_origin_is_refused_when_it_does_not_match(
    browser: Chromium, page_origin: str, start_gateway: StartGateway
) -> None:
    gateway = await mock_gateway(start_gateway, allow_origins=["http://*.example.com"])

    result = await stream_in_page(browser, page_origin, gateway)

    assert "Failed to fetch" in result.get("error", ""), result


async def test_page_on_a_refused_origin_cannot_fetch(
    browser: Chromium, page_origin: str, start_gateway: StartGateway
) -> None:
    gateway = await mock_gateway(start_gateway, allow_origins=["https://app.example.com"])

    result = await stream_in_page(browser, page_origin, gateway)

    assert "Failed to fetch" in result.get("error", ""), result


async def test_page_without_cors_configured_cannot_fetch(
    browser: Chromium, page_origin: str, start_gateway: StartGateway
) -> None:
    gateway = await mock_gateway(start_gateway)

    result = await stream_in_page(browser, page_origin, gateway)

    assert "Failed to fetch" in result.get("error", ""), result


async def test_credentials_reach_the_gateway_only_where_allowed(
    browser: Chromium, page_origin: str, start_gateway: StartGateway
) -> None:
    allowed = await mock_gateway(start_gateway, allow_origins=[page_origin], allow_credentials=True)
    refused = await mock_gateway(start_gateway, allow_origins=[page_origin])

    with_credentials = await stream_in_page(browser, page_origin, allowed, "include")
    without = await stream_in_page(browser, page_origin, refused, "include")

    assert with_credentials.get("done") is True, with_credentials
    assert "Failed to fetch" in without.get("error", ""), without
