"""CORS on a real socket: preflights answered per the Fetch standard for the configured origins
(exact and subdomain patterns) and methods, Private Network Access preflights only when
allowed, every preflight recorded as a request of its own, the headers on every answer to an
allowed origin (SSE streams and errors included), and nothing at all - no CORS header,
OPTIONS still 405 - without origins configured or for an origin that is not allowed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from tests.conftest import RunningGateway, StartGateway
from tests.observability.scrape import finished, total, value
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream

ORIGIN = "https://app.example.com"
OTHER = "https://evil.example.net"
CHAT = "/v1/chat/completions"
EXPOSED = {
    "x-request-id",
    "request-id",
    "retry-after",
    "x-should-retry",
    "x-ratelimit-reset-tokens",
}


def chat(model: str = "m", *, stream: bool = True) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


def cors_headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    return {
        name.lower(): value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control-")
    }


def vary(response: aiohttp.ClientResponse) -> set[str]:
    return {part.strip().lower() for part in response.headers.get("Vary", "").split(",") if part}


async def preflight(
    client: aiohttp.ClientSession,
    gw: RunningGateway,
    origin: str = ORIGIN,
    *,
    path: str = CHAT,
    method: str = "POST",
    headers: str | None = "content-type, authorization",
    extra: dict[str, str] | None = None,
) -> aiohttp.ClientResponse:
    fields = {"Origin": origin, "Access-Control-Request-Method": method, **(extra or {})}
    if headers is not None:
        fields["Access-Control-Request-Headers"] = headers
    async with client.options(gw.url + path, headers=fields) as response:
        await response.read()
        return response


#: What Chromium adds to a preflight from a public page to a private address.
PRIVATE_NETWORK = {"Access-Control-Request-Private-Network": "true"}


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


def preflights_logged(logs: list[dict[str, Any]]) -> list[tuple[int, str, str | None]]:
    """(status, outcome, refused) of each preflight's log line, in order."""
    return [
        (line["status"], line["outcome"], line.get("refused"))
        for line in logs
        if line["event"] == "request_finished" and line["endpoint"] == "preflight"
    ]


def preflights_counted(gw: RunningGateway, outcome: str) -> float:
    return value(gw, "gateway_requests_total", endpoint="preflight", route="none", outcome=outcome)


async def start_with_cors(
    start_gateway: StartGateway, upstream: FakeUpstream, **fields: Any
) -> RunningGateway:
    """A gateway allowing `ORIGIN`, with the other `cors` settings `fields`."""
    return await start_gateway(upstream, ("m",), cors={"allow_origins": [ORIGIN], **fields})


@pytest.fixture
async def gateway(upstream: FakeUpstream, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(upstream, ("m", "m500"), cors={"allow_origins": [ORIGIN]})


async def test_without_origins_there_are_no_cors_headers_and_options_stays_405(
    upstream: FakeUpstream, start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(upstream, ("m",))

    refused = await preflight(client, gw)
    async with client.post(gw.url + CHAT, json=chat(), headers={"Origin": ORIGIN}) as answer:
        body = await answer.text()

    assert refused.status == 405
    assert refused.content_type == "application/json"
    assert cors_headers(refused) == {}
    assert answer.status == 200
    assert "data:" in body
    assert cors_headers(answer) == {}
    assert "origin" not in vary(answer)


async def test_preflight_from_an_allowed_origin_is_answered_204_before_any_handler(
    gateway: RunningGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    response = await preflight(client, gateway, headers="Content-Type, x-stainless-os")

    headers = cors_headers(response)
    assert response.status == 204
    assert headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in headers["access-control-allow-methods"].split(", ")
    assert headers["access-control-allow-headers"] == "content-type, x-stainless-os"
    assert headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in headers
    assert {"origin", "access-control-request-method", "access-control-request-headers"} <= vary(
        response
    )
    assert upstream.requests == []


async def test_preflight_is_answered_on_paths_without_v1_and_not_on_health_checks(
    gateway: RunningGateway, client: aiohttp.ClientSession
) -> None:
    bare = await preflight(client, gateway, path="/chat/completions")
    models = await preflight(client, gateway, path="/v1/models", method="GET", headers=None)
    health = await preflight(client, gateway, path="/healthz", method="GET", headers=None)

    assert bare.status == 204
    assert cors_headers(bare)["access-control-allow-origin"] == ORIGIN
    assert models.status == 204
    assert "access-control-allow-headers" not in cors_headers(models)
    assert health.status == 405
    assert cors_headers(health) == {}


async def test_preflight_needs_no_gateway_key_and_the_refusal_still_carries_cors_headers(
    upstream: FakeUpstream, start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(
        upstream, ("m",), cors={"allow_origins": [ORIGIN]}, auth={"keys": ["gateway-key"]}
    )

    allowed = await preflight(client, gw)
    async with client.post(gw.url + CHAT, json=chat(), headers={"Origin": ORIGIN}) as refused:
        await refused.read()
    key = {"Origin": ORIGIN, "Authorization": "Bearer gateway-key"}
    async with client.post(gw.url + CHAT, json=chat(), headers=key) as served:
        await served.read()

    assert allowed.status == 204
    assert refused.status == 401
    assert cors_headers(refused)["access-control-allow-origin"] == ORIGIN
    assert served.status == 200
    assert len(upstream.requests) == 1


async def test_preflight_from_a_refused_origin_gets_no_cors_headers(
    gateway: RunningGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    response = await preflight(client, gateway, OTHER)

    assert response.status == 405
    assert cors_headers(response) == {}
    assert upstream.requests == []


async def test_preflight_asking_for_a_header_not_allowed_gets_no_allow_headers(
    gateway: RunningGateway, client: aiohttp.ClientSession
) -> None:
    response = await preflight(client, gateway, headers="content-type, x-not-allowed")

    headers = cors_headers(response)
    assert response.status == 204
    assert headers["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-headers" not in headers
    assert "access-control-max-age" not in headers


async def test_preflight_asking_for_a_method_not_served_gets_no_allow_methods(
    gateway: RunningGateway, client: aiohttp.ClientSession
) -> None:
    response = await preflight(client, gateway, method="PUT")

    headers = cors_headers(response)
    assert response.status == 204
    assert "access-control-allow-methods" not in headers
    assert "access-control-max-age" not in headers


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.example.com", True),
        ("https://a.b.example.com", True),
        ("https://example.com", False),  # the parent domain is not its own subdomain
        ("http://app.example.com", False),  # another scheme
        ("https://app.example.com:8443", False),  # another port
        ("https://appexample.com", False),
        ("https://app.example.com.evil.net", False),
        ("https://APP.example.com", False),  # not a browser's serialisation
        ("null", False),
    ],
)
async def test_subdomain_pattern_allows_subdomains_of_the_domain_only(
    upstream: FakeUpstream,
    start_gateway: StartGateway,
    client: aiohttp.ClientSession,
    origin: str,
    allowed: bool,
) -> None:
    gw = await start_gateway(upstream, ("m",), cors={"allow_origins": ["https://*.example.com"]})

    response = await preflight(client, gw, origin)

    assert (response.status == 204) is allowed
    assert cors_headers(response).get("access-control-allow-origin") == (
        origin if allowed else None
    )


async def test_with_credentials_the_origin_is_named_and_credentials_allowed(
    upstream: FakeUpstream, start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(
        upstream, ("m",), cors={"allow_origins": [ORIGIN], "allow_credentials": True}
    )

    allowed = await preflight(client, gw)
    async with client.post(gw.url + CHAT, json=chat(), headers={"Origin": ORIGIN}) as answer:
        await answer.read()

    for response in (allowed, answer):
        headers = cors_headers(response)
        assert headers["access-control-allow-origin"] == ORIGIN
        assert headers["access-control-allow-credentials"] == "true"


async def test_any_origin_without_credentials_is_answered_with_a_star(
    upstream: FakeUpstream, start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(upstream, ("m",), cors={"allow_origins": ["*"]})

    allowed = await preflight(client, gw, OTHER)
    async with client.post(gw.url + CHAT, json=chat(), headers={"Origin": OTHER}) as answer:
        await answer.read()

    assert cors_headers(allowed)["access-control-allow-origin"] == "*"
    assert cors_headers(answer)["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in cors_headers(answer)


async def test_sse_stream_to_an_allowed_origin_carries_the_cors_headers(
    gateway: RunningGateway, client: aiohttp.ClientSession
) -> None:
    async with client.post(gateway.url + CHAT, json=chat(), headers={"Origin": ORIGIN}) as answer:
        body = await answer.text()

    headers = cors_headers(answer)
    assert answer.status == 200
    assert answer.content_type == "text/event-stream"
    assert body.rstrip().endswith("data: [DONE]")
    assert headers["access-control-allow-origin"] == ORIGIN
    assert set(headers["access-control-expose-headers"].split(", ")) >= EXPOSED
    assert "origin" in vary(answer)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (CHAT, chat("not-routed"), 404),  # the gateway's own 4xx
        (CHAT, chat("m500"), 502),  # an upstream's 5xx
        ("/v1/nowhere", chat(), 404),  # the router's 404
    ],
)
async def test_error_answers_to_an_allowed_origin_carry_the_cors_headers(
    gateway: RunningGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    path: str,
    body: dict[str, Any],
    status: int,
) -> None:
    upstream.script("m500", fake.status(500))

    async with client.post(gateway.url + path, json=body, headers={"Origin": ORIGIN}) as answer:
        await answer.read()

    headers = cors_headers(answer)
    assert answer.status == status
    assert headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in headers["access-control-expose-headers"].split(", ")


async def test_refused_origin_is_served_as_without_cors_but_gets_no_cors_headers(
    gateway: RunningGateway, client: aiohttp.ClientSession
) -> None:
    async with client.post(gateway.url + CHAT, json=chat(), headers={"Origin": OTHER}) as answer:
        body = await answer.text()
    async with client.post(gateway.url + CHAT, json=chat()) as no_origin:
        await no_origin.read()

    assert answer.status == 200
    assert body.rstrip().endswith("data: [DONE]")
    assert cors_headers(answer) == {}
    assert "origin" in vary(answer)  # the answer would differ for another origin
    assert no_origin.status == 200
    assert cors_headers(no_origin) == {}


async def test_health_checks_carry_no_cors_headers(
    gateway: RunningGateway, client: aiohttp.ClientSession
) -> None:
    async with client.get(gateway.url + "/healthz", headers={"Origin": ORIGIN}) as answer:
        await answer.read()

    assert answer.status == 200
    assert cors_headers(answer) == {}


async def test_every_preflight_is_recorded_as_a_request_of_its_own_without_admission(
    upstream: FakeUpstream,
    start_gateway: StartGateway,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
) -> None:
    gw = await start_gateway(
        upstream, ("m",), cors={"allow_origins": [ORIGIN]}, auth={"keys": ["gateway-key"]}
    )

    allowed = await preflight(client, gw)
    wrong_header = await preflight(client, gw, headers="content-type, x-not-allowed")
    wrong_method = await preflight(client, gw, method="PUT")
    stranger = await preflight(client, gw, OTHER)
    await finished(gw, 4)

    statuses = [r.status for r in (allowed, wrong_header, wrong_method, stranger)]
    assert statuses == [204, 204, 204, 405]
    # The refused origin gets the path's own 405, as without CORS: admission (which would
    # answer 401 for want of a gateway key) never saw it.
    assert stranger.content_type == "application/json"
    assert "OPTIONS" not in stranger.headers["Allow"]
    assert preflights_logged(logs) == [
        (204, "completed", None),
        (204, "refused", "headers"),
        (204, "refused", "method"),
        (405, "refused", "origin"),
    ]
    assert preflights_counted(gw, "completed") == 1
    assert preflights_counted(gw, "refused") == 3
    assert total(gw, "gateway_requests_total") == 4  # nothing else recorded them
    assert total(gw, "gateway_errors_total") == 0
    assert upstream.requests == []


async def test_allowed_methods_are_the_configured_ones(
    gateway: RunningGateway,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
    upstream: FakeUpstream,
    start_gateway: StartGateway,
) -> None:
    gw = await start_with_cors(start_gateway, upstream, allow_methods=["post", "PATCH"])

    default = await preflight(client, gateway, method="DELETE")
    patch = await preflight(client, gw, method="PATCH")
    get = await preflight(client, gw, path="/v1/models", method="GET", headers=None)

    assert cors_headers(default)["access-control-allow-methods"] == "GET, POST, DELETE"
    assert cors_headers(patch)["access-control-allow-methods"] == "POST, PATCH"
    assert cors_headers(patch)["access-control-max-age"] == "600"
    assert get.status == 204
    assert "access-control-allow-methods" not in cors_headers(get)
    assert "access-control-max-age" not in cors_headers(get)
    assert [refused for _, _, refused in preflights_logged(logs)] == [None, None, "method"]


async def test_private_network_preflight_is_allowed_only_when_configured(
    upstream: FakeUpstream,
    start_gateway: StartGateway,
    gateway: RunningGateway,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
) -> None:
    on = await start_with_cors(start_gateway, upstream, allow_private_network=True)

    off = await preflight(client, gateway, extra=PRIVATE_NETWORK)
    allowed = await preflight(client, on, extra=PRIVATE_NETWORK)
    plain = await preflight(client, on)
    stranger = await preflight(client, on, OTHER, extra=PRIVATE_NETWORK)

    assert off.status == 204
    assert cors_headers(off)["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-private-network" not in cors_headers(off)
    assert "access-control-max-age" not in cors_headers(off)  # not to be cached: refused
    assert cors_headers(allowed)["access-control-allow-private-network"] == "true"
    assert cors_headers(allowed)["access-control-max-age"] == "600"
    assert "access-control-request-private-network" in vary(allowed)
    assert "access-control-allow-private-network" not in cors_headers(plain)
    assert cors_headers(plain)["access-control-max-age"] == "600"
    assert (stranger.status, cors_headers(stranger)) == (405, {})
    assert preflights_logged(logs) == [
        (204, "refused", "private_network"),
        (204, "completed", None),
        (204, "completed", None),
        (405, "refused", "origin"),
    ]
