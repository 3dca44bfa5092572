"""Gateway keys: with keys configured, `/v1/*` needs one; who the key belongs to shows in logs
by name only; each key's own limits (requests in flight, requests per minute) and the
gateway's `limits.max_streams` refuse at once with `Retry-After`, leaving running streams and
the listener alone.

A refused request never reaches the upstream and is refused from its head: its body is never
waited for. Keys can be configured in clear (environment, key files) or as `sha256:<hex>`.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web

from gateway.cli import main
from gateway.observability import configure_logging
from gateway.server.app_state import STORE
from gateway.settings import GatewaySettings
from gateway.settings.auth import hash_key
from tests.conftest import StartGateway
from tests.observability.scrape import finished, total
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import DONE, FakeUpstream, UpstreamCall
from tests.support.raw_http import head

MODEL = "m"
KEY = "gw-key-canary-41c7d9e0"
OTHER_KEY = "gw-key-canary-8a02f3b5"
CHAT = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging("debug", "json", buffer)
    yield buffer
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)


def finished_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    return [line for line in lines if line["event"] in ("request_finished", "stream_finished")]


async def post(
    client: aiohttp.ClientSession, url: str, body: dict[str, Any], **headers: str
) -> tuple[int, dict[str, str], bytes]:
    async with client.post(url, json=body, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


def gated(gate: asyncio.Event) -> fake.Behaviour:
    """Stream the default answer once `gate` is set."""
    answer = fake.sse_stream()

    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        await gate.wait()
        return await answer(request, call)

    return behave


# --- who may call ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        pytest.param({}, "no key", id="none"),
        pytest.param(bearer("wrong"), "wrong key", id="wrong"),
        pytest.param({"x-api-key": "wrong"}, "wrong x-api-key", id="wrong-x-api-key"),
        pytest.param({"Authorization": f"Basic {KEY}"}, "not bearer", id="basic"),
        pytest.param({"Authorization": "Bearer "}, "empty bearer", id="empty"),
        # Authorization and x-api-key with different keys: 400 (test_duplicate_credentials.py)
    ],
)
async def test_v1_without_a_valid_key_is_401_in_the_openai_shape(
    upstream: FakeUpstream,
    start_gateway: StartGateway,
    client: aiohttp.ClientSession,
    headers: dict[str, str],
    why: str,
) -> None:
    gw = await start_gateway(upstream, models=(MODEL,), auth={"keys": [KEY]})

    status, answer_headers, raw = await post(
        client, f"{gw.url}/v1/chat/completions", CHAT, **headers
    )

    assert status == 401, why
    assert answer_headers["WWW-Authenticate"] == 'Bearer realm="sse-gateway"'
    error = json.loads(raw)["error"]
    assert error["code"] == "unauthorized"
    assert KEY.encode() not in raw
    assert upstream.requests == []


async def test_messages_without_a_key_is_401_authentication_error(
    upstream: FakeUpstream, start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(upstream, models=(MODEL,), auth={"keys": [KEY]})

    status, _, raw = await post(client, f"{gw.url}/v1/messages", MESSAGES, **{"x-api-key": "no"})

    assert status == 401
    assert json.loads(raw) == {
        "type": "error",
        "error": {"type": "authentication_error", "message": json.loads(raw)["error"]["message"]},
    }


@pytest.mark.parametrize("scheme", ["bearer", "x-api-key"])
async def test_a_configured_key_is_accepted_either_way(
    upstream: FakeUpstream, start_gateway: StartGateway, client: aiohttp.ClientSession, scheme: str
) -> None:
    gw = await start_gateway(upstream, models=(MODEL,), auth={"keys": [OTHER_KEY, KEY]})
    upstream.script(MODEL, fake.sse_stream())
    headers = bearer(KEY) if scheme == "bearer" else {"x-api-key": KEY}

    status, _, raw = await post(client, f"{gw.url}/v1/chat/completions", CHAT, **headers)

    assert status == 200
    assert raw.endswith(DONE)
    [call] = upstream.requests
    # The client's key never goes upstream: the upstream gets the gateway's own.
    assert KEY not in json.dumps(dict(call.headers))


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/metrics", 401),  # with gateway keys, by default (metrics.require_key auto)
        ("GET", "/v1/models", 401),
        ("GET", "/v1/nope", 401),
        ("GET", "/v1/chat/completions", 401),
    ],
)
async def test_health_is_open_metrics_and_v1_need_a_key(
    start_gateway: StartGateway, client: aiohttp.ClientSession, method: str, path: str, status: int
) -> None:
    gw = await start_gateway(None, auth={"keys": [KEY]})

    async with client.request(method, f"{gw.url}{path}") as response:
        assert response.status == status
    async with client.request(method, f"{gw.url}{path}", headers=bearer(KEY)) as response:
        assert response.status != 401


async def test_the_key_is_checked_before_the_body_is_read(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(upstream, models=(MODEL,), auth={"keys": [KEY]})
    port = int(gw.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        # A head that announces a body which never comes: the answer cannot wait for it.
        writer.write(head("POST", "/v1/chat/completions", {"Content-Length": "100000"}))
        async with asyncio.timeout(10):
            answer = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()

    assert answer.startswith(b"HTTP/1.1 401 ")


@pytest.mark.parametrize("form", ["hashed-in-keys", "named-client", "keys-file"])
async def test_keys_may_be_configured_hashed_and_are_logged_by_name_or_id_only(
    upstream: FakeUpstream,
    start_gateway: StartGateway,
    client: aiohttp.ClientSession,
    log_stream: io.StringIO,
    tmp_path: Any,
    form: str,
) -> None:
    auth: dict[str, Any] = {
        "hashed-in-keys": {"keys": [hash_key(KEY)]},
        "named-client": {"clients": [{"name": "team-a", "key_hash": hash_key(KEY)}]},
        "keys-file": {"keys_file": str(tmp_path / "keys")},
    }[form]
    (tmp_path / "keys").write_text(f"# ops\n{hash_key(OTHER_KEY)}\n{KEY}\n")
    gw = await start_gateway(upstream, models=(MODEL,), auth=auth)
    upstream.script(MODEL, fake.sse_stream())

    status, _, _ = await post(client, f"{gw.url}/v1/chat/completions", CHAT, **bearer(KEY))
    refused, _, _ = await post(client, f"{gw.url}/v1/chat/completions", CHAT, **bearer("nope"))
    await finished(gw, 2)

    assert (status, refused) == (200, 401)
    served, denied = finished_lines(log_stream)
    expected = "team-a" if form == "named-client" else "key-" + hash_key(KEY)[7:15]
    assert served["client"] == expected
    assert "client" not in denied
    assert KEY not in log_stream.getvalue()
    assert hash_key(KEY)[7:] not in log_stream.getvalue()  # not even the whole digest


# --- limits ------------------------------------------------------------------------------------


async def test_a_key_over_its_streams_gets_429_while_others_and_running_streams_go_on(
    upstream: FakeUpstream, start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    clients = [
        {"name": "small", "key_hash": hash_key(KEY), "max_streams": 2},
        {"name": "other", "key_hash": hash_key(OTHER_KEY)},
    ]
    gw = await start_gateway(upstream, models=(MODEL,), auth={"clients": clients})
    gate = asyncio.Event()
    upstream.script(MODEL, gated(gate))
    url = f"{gw.url}/v1/chat/completions"
    running = [asyncio.create_task(post(client, url, CHAT, **bearer(KEY))) for _ in range(2)]
    for _ in running:
        await upstream.next_call()

    refused = await post(client, url, CHAT, **bearer(KEY))
    other = asyncio.create_task(post(client, url, CHAT, **bearer(OTHER_KEY)))
    await upstream.next_call()  # the other key is admitted
    gate.set()
    done = [await task for task in [*running, other]]

    status, headers, raw = refused
    assert status == 429
    assert headers["Retry-After"] == "1"
    assert json.loads(raw)["error"]["code"] == "key_concurrency_limited"
    assert [(s, body.endswith(DONE)) for s, _, body in done] == [(200, True)] * 3
    assert len(upstream.requests) == 3
    # Its streams over, the key may stream again.
    status, _, _ = await post(client, url, CHAT, **bearer(KEY))
    assert status == 200
    assert gw.app[STORE].in_flight == 0


async def test_a_key_over_its_requests_per_minute_gets_429_with_retry_after(
    upstream: FakeUpstream, start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(
        upstream,
        models=(MODEL,),
        auth={"keys": [KEY, OTHER_KEY], "requests_per_minute_per_key": 3},
    )
    upstream.script(MODEL, fake.sse_stream())
    url = f"{gw.url}/v1/chat/completions"

    statuses = [(await post(client, url, CHAT, **bearer(KEY)))[0] for _ in range(3)]
    status, headers, raw = await post(client, url, CHAT, **bearer(KEY))
    other, _, _ = await post(client, url, CHAT, **bearer(OTHER_KEY))

    assert statuses == [200, 200, 200]
    assert status == 429
    # One request every 20 s refills the bucket: the next one is due in (about) 20 s.
    assert 1 <= int(headers["Retry-After"]) <= 20
    assert json.loads(raw)["error"]["code"] == "key_rate_limited"
    assert other == 200
    assert len(upstream.requests) == 4


async def test_over_max_streams_is_an_immediate_503_and_the_gateway_keeps_serving(
    upstream: FakeUpstream, start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(upstream, models=(MODEL,), limits={"max_streams": 2})
    gate = asyncio.Event()
    upstream.script(MODEL, gated(gate))
    url = f"{gw.url}/v1/chat/completions"
    running = [asyncio.create_task(post(client, url, CHAT)) for _ in range(2)]
    for _ in running:
        await upstream.next_call()

    over = await post(client, url, CHAT)
    over_messages = await post(client, f"{gw.url}/v1/messages", MESSAGES)
    async with client.get(f"{gw.url}/healthz") as health:
        assert health.status == 200  # the listener and the loop are alive
    gate.set()
    done = [await task for task in running]
    await finished(gw, 4)

    status, headers, raw = over
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert json.loads(raw)["error"]["code"] == "gateway_overloaded"
    assert over_messages[0] == 503
    assert json.loads(over_messages[2])["error"]["type"] == "overloaded_error"
    assert [(s, body.endswith(DONE)) for s, _, body in done] == [(200, True)] * 2
    assert len(upstream.requests) == 2
    assert total(gw, "gateway_errors_total", code="gateway_overloaded") == 2
    assert total(gw, "gateway_requests_total", route="none", outcome="rate_limit") == 2
    status, _, _ = await post(client, url, CHAT)
    assert status == 200


# --- settings and the hash-key command ---------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "says"),
    [
        pytest.param({"keys": ["sha256:abc"]}, "sha256:<64 hex digits>", id="short-hash"),
        pytest.param({"keys": [KEY, KEY]}, "twice", id="same-key-twice"),
        pytest.param({"keys": [KEY, hash_key(KEY)]}, "twice", id="same-key-two-forms"),
        pytest.param(
            {"keys": [KEY], "clients": [{"name": "a", "key_hash": hash_key(KEY)}]},
            "elsewhere",
            id="client-key-in-keys",
        ),
        pytest.param(
            {
                "clients": [
                    {"name": "a", "key_hash": hash_key(KEY)},
                    {"name": "a", "key_hash": hash_key(OTHER_KEY)},
                ]
            },
            "twice",
            id="name-twice",
        ),
        pytest.param(
            {"clients": [{"name": "a b", "key_hash": hash_key(KEY)}]}, "name", id="bad-name"
        ),
        pytest.param(
            {"clients": [{"name": "a", "key_hash": KEY}]}, "key_hash", id="clear-key-hash"
        ),
    ],
)
def test_bad_auth_settings_are_refused_without_showing_a_key(
    auth: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValueError, match=says) as raised:
        GatewaySettings(auth=auth)

    assert KEY not in str(raised.value)


def test_hash_key_prints_the_configurable_form_of_a_key_read_on_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{KEY}\n"))

    assert main(["hash-key"]) == 0

    out = capsys.readouterr().out.strip()
    assert out == hash_key(KEY)
    assert out.startswith("sha256:")
    assert len(out) == len("sha256:") + 64
    GatewaySettings(auth={"keys": [out]})  # what it printed is accepted as a key


def test_hash_key_refuses_an_empty_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))

    assert main(["hash-key"]) == 2
    assert capsys.readouterr().out == ""


def test_check_config_shows_named_clients_and_never_a_key(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.yaml"
    clients = [{"name": "team-a", "key_hash": hash_key(KEY), "max_streams": 4}]
    config.write_text(json.dumps({"auth": {"clients": clients}}))  # YAML: JSON is YAML
    monkeypatch.setenv("GATEWAY_AUTH__KEYS", json.dumps([OTHER_KEY]))

    assert main(["check-config", str(config)]) == 0  # a digest may live in the config file

    out = capsys.readouterr().out
    assert "1 gateway key(s), env GATEWAY_AUTH__KEYS; named clients team-a" in out
    assert OTHER_KEY not in out
    assert hash_key(KEY) not in out
