"""Header hygiene, both ways, on both APIs: what crosses the gateway is what it chose to send.

- Upstream, a call carries the gateway's own headers, its own key and the few protocol headers
  a client may pass (`anthropic-version`, `anthropic-beta` on `/v1/messages`): never the
  client's credentials (`Authorization`, `x-api-key`, cookies, proxy credentials, a gateway
  key), never its hop-by-hop headers or the ones its `Connection` names.
- To the client, an answer carries the gateway's own headers: never the upstream's
  `Set-Cookie`, hop-by-hop or internal headers, streaming or not, success or error.
- A redirect from an upstream is not followed, and where a call goes comes from the config
  only: not from the client's `Host`, forwarding headers, an absolute request-target, the
  query string or fields of the body.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import UPSTREAM_KEY, StartGateway
from tests.support import fake_upstream as fake
from tests.support.anthropic_gateway import CLAUDE, GPT, anthropic_routes, messages_body
from tests.support.fake_upstream import FakeUpstream, UpstreamCall
from tests.support.raw_http import exchange, head, parse_responses

CLIENT_SECRET = "client-cred-canary-93e1"
GATEWAY_KEY = "gw-key-canary-d4f0a7"
CHAT = {"model": GPT, "stream": True, "messages": [{"role": "user", "content": "hi"}]}

#: What a client may send that must never reach an upstream.
CLIENT_HEADERS = {
    "Cookie": f"session={CLIENT_SECRET}",
    "Proxy-Authorization": f"Basic {CLIENT_SECRET}",
    "Connection": "keep-alive, X-Hop-Secret",
    "X-Hop-Secret": CLIENT_SECRET,
    "Keep-Alive": "timeout=5",
    "TE": "trailers",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-For": "203.0.113.9",
    "X-Original-URL": "http://evil.example/v1",
    "Forwarded": "host=evil.example",
    "X-Api-Base": "http://evil.example/v1",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "tools-2024-04-04",
}
#: Every header name an upstream call may carry (the second list: the client's protocol ones).
UPSTREAM_ALLOWED = {
    "host", "content-type", "content-length", "accept", "accept-encoding", "user-agent",
    "authorization", "x-api-key", "x-request-id",
} | {"anthropic-version", "anthropic-beta"}  # fmt: skip

#: What an upstream may answer that must never reach a client.
UPSTREAM_HEADERS = {
    "Set-Cookie": "upstream-session=abc; HttpOnly",
    "Connection": "keep-alive, X-Upstream-Hop",
    "X-Upstream-Hop": "1",
    "Keep-Alive": "timeout=60",
    "Proxy-Authenticate": 'Basic realm="upstream"',
    "X-Internal-Debug": "node-7 db=primary",
    "X-Upstream-Key-Echo": UPSTREAM_KEY,
    "Server": "upstream-nginx/1.2",
    "Via": "1.1 internal-proxy",
    "Alt-Svc": 'h3=":443"',
    "Openai-Organization": "org-internal",
    "X-Ratelimit-Remaining-Tokens": "100",
}
#: Every header name an answer to the client may carry.
CLIENT_ALLOWED = {
    "content-type", "content-length", "transfer-encoding", "cache-control", "x-accel-buffering",
    "x-request-id", "request-id", "date", "server", "retry-after", "connection",
    "www-authenticate", "x-should-retry",
}  # fmt: skip


def with_headers(code: int, body: bytes, content_type: str) -> fake.Behaviour:
    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        response = web.StreamResponse(status=code, headers=UPSTREAM_HEADERS)
        response.content_type = content_type
        response.headers["Retry-After"] = "7"
        await response.prepare(request)
        await response.write(body)
        await response.write_eof()
        return response

    return behave


def check_upstream_headers(call: UpstreamCall) -> None:
    names = {name.lower() for name in call.headers}
    assert names <= UPSTREAM_ALLOWED, names - UPSTREAM_ALLOWED
    sent = json.dumps(list(call.headers.items()))
    for secret in (CLIENT_SECRET, GATEWAY_KEY, "evil.example"):
        assert secret not in sent
    credentials = [
        v for k, v in call.headers.items() if k.lower() in ("authorization", "x-api-key")
    ]
    assert credentials in ([f"Bearer {UPSTREAM_KEY}"], [UPSTREAM_KEY])


def check_client_headers(headers: Any) -> None:
    names = {name.lower() for name in headers}
    assert names <= CLIENT_ALLOWED, names - CLIENT_ALLOWED
    assert headers.get("Server", "") != UPSTREAM_HEADERS["Server"]
    assert UPSTREAM_KEY not in json.dumps(list(headers.items()))


@pytest.fixture
async def gateway_url(upstream: FakeUpstream, start_gateway: StartGateway) -> str:
    gw = await start_gateway(None, **anthropic_routes(upstream), auth={"keys": [GATEWAY_KEY]})
    return gw.url


# --- client -> upstream ------------------------------------------------------------------------


@pytest.mark.parametrize("key_header", ["authorization", "x-api-key"])
@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/chat/completions", CHAT), ("/v1/messages", messages_body())],
    ids=["chat", "messages"],
)
async def test_client_credentials_and_hop_by_hop_headers_never_go_upstream(
    upstream: FakeUpstream,
    gateway_url: str,
    client: aiohttp.ClientSession,
    key_header: str,
    path: str,
    body: dict[str, Any],
) -> None:
    upstream.script(GPT, fake.sse_stream())
    upstream.script(CLAUDE, fake.sse_stream())
    key = {"authorization": f"Bearer {GATEWAY_KEY}", "x-api-key": GATEWAY_KEY}[key_header]

    async with client.post(
        f"{gateway_url}{path}?base_url=http://evil.example",
        json={**body, "base_url": "http://evil.example", "api_base": "http://evil.example"},
        headers={**CLIENT_HEADERS, key_header: key},
    ) as response:
        assert response.status == 200
        await response.read()

    [call] = upstream.requests
    check_upstream_headers(call)
    if path == "/v1/messages":
        assert call.headers["anthropic-beta"] == "tools-2024-04-04"
    else:
        assert "anthropic-beta" not in call.headers


# --- upstream -> client ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "body", "content_type", "status"),
    [
        (200, b"".join(fake.openai_chunks(["a"])) + fake.DONE, "text/event-stream", 200),
        (429, b'{"error": {"message": "slow down"}}', "application/json", 429),
        (500, b"<html>oops</html>", "text/html", 502),
    ],
    ids=["stream", "rate-limited", "server-error"],
)
async def test_upstream_cookies_hop_by_hop_and_internal_headers_never_reach_the_client(
    upstream: FakeUpstream,
    gateway_url: str,
    client: aiohttp.ClientSession,
    code: int,
    body: bytes,
    content_type: str,
    status: int,
) -> None:
    upstream.script(GPT, with_headers(code, body, content_type))

    async with client.post(
        f"{gateway_url}/v1/chat/completions", json=CHAT, headers={"x-api-key": GATEWAY_KEY}
    ) as response:
        assert response.status == status
        await response.read()

    check_client_headers(response.headers)
    if status == 429:
        assert response.headers["Retry-After"] == "7"  # the one upstream header passed on


async def test_upstream_headers_never_reach_the_client_of_a_non_streaming_answer(
    upstream: FakeUpstream, gateway_url: str, client: aiohttp.ClientSession
) -> None:
    completion = json.dumps(
        {"id": "x", "object": "chat.completion", "choices": [], "usage": {}}
    ).encode()
    upstream.script(GPT, with_headers(200, completion, "application/json"))

    async with client.post(
        f"{gateway_url}/v1/chat/completions",
        json={**CHAT, "stream": False},
        headers={"x-api-key": GATEWAY_KEY},
    ) as response:
        assert response.status == 200
        assert await response.read() == completion

    check_client_headers(response.headers)


# --- where calls go ----------------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_upstream_redirects_are_not_followed(
    upstream: FakeUpstream, start_gateway: StartGateway, client: aiohttp.ClientSession, code: int
) -> None:
    async with FakeUpstream() as elsewhere:
        elsewhere.script(GPT, fake.sse_stream())
        location = f"{elsewhere.base_url}/chat/completions"
        upstream.script(GPT, fake.status(code, body=b"", headers={"Location": location}))
        gw = await start_gateway(upstream, models=(GPT,))

        async with client.post(f"{gw.url}/v1/chat/completions", json=CHAT) as response:
            assert response.status == 502
            answer = await response.read()

        assert elsewhere.requests == []
    assert len(upstream.requests) == 1
    assert b"127.0.0.1" not in answer  # the Location is not shown either
    check_client_headers(response.headers)


async def test_an_absolute_request_target_or_a_host_header_cannot_redirect_a_call(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    async with FakeUpstream() as elsewhere:
        gw = await start_gateway(upstream, models=(GPT,))
        upstream.script(GPT, fake.json_completion())
        body = json.dumps({**CHAT, "stream": False}).encode()
        target = f"http://127.0.0.1:{elsewhere.port}/v1/chat/completions"
        fields = {
            "Host": f"127.0.0.1:{elsewhere.port}",
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Connection": "close",
        }
        raw = head("POST", target, fields).replace(b"Host: gateway.test\r\n", b"")

        [answer] = parse_responses(await exchange(int(gw.url.rsplit(":", 1)[1]), raw + body))

        assert answer.status == 200
        assert elsewhere.requests == []
    assert len(upstream.requests) == 1
