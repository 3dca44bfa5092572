"""The canary test: no secret leaves the gateway, whatever goes wrong.

Every secret the gateway holds is a unique canary string: the provider keys of an OpenAI-kind
and an Anthropic-kind upstream (one from the environment, one from a key file) and two gateway
keys (one in clear from the environment, one configured by its `sha256:` digest as a named
client). The gateway runs as a real subprocess in Python's development mode (`-X dev`: asyncio
debug, every warning shown) with logs at debug level, through a small launcher that makes one
handler raise and leaks an `aiohttp` session carrying a provider key at start-up (so unclosed-
resource warnings really are printed). Then every error path is walked: the upstream answers
401/400/429/500 echoing its key in bodies and headers, is unreachable, goes silent before the
first event or mid-stream, resets; clients present wrong keys, keys that are too long, trickle
their bodies, exceed their key's rate; a handler raises; the gateway is stopped mid-stream.

Zero occurrences of any canary are allowed in: the gateway's stderr (every log line at every
level, warnings, tracebacks), the Prometheus exposition, every response's headers and body,
every SSE error event. The test also checks that each path was really taken (its log line or
warning is there), so that it cannot pass by not looking.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from gateway.redaction import MIN_FRAGMENT
from gateway.settings.auth import hash_key
from tests.support import anthropic_wire as claude
from tests.support import fake_upstream as fake
from tests.support.anthropic_wire import anthropic_error
from tests.support.fake_upstream import FakeUpstream, UpstreamCall
from tests.support.openai_wire import chunk_event, openai_error
from tests.support.raw_http import head, trickle

REPO = Path(__file__).resolve().parents[2]
PROVIDER_KEY = "PROVCANARYopenai7f3a9c1e5b"
ANTHROPIC_KEY = "PROVCANARYclaude2d8e6b0a4c"
GATEWAY_KEY = "GWCANARYclear91c4e7a2f0d3"
CLIENT_KEY = "GWCANARYnamed5e0b3d8c1a7f"
CANARIES = (PROVIDER_KEY, ANTHROPIC_KEY, GATEWAY_KEY, CLIENT_KEY)
#: Forms of a canary that would give it away too: its digest (the configured `key_hash`).
DIGESTS = tuple(hash_key(key)[7:] for key in (GATEWAY_KEY, CLIENT_KEY))

LAUNCHER = '''
"""`gateway`, with the list of models made to raise and a session leaked at start-up."""
import os
import sys

import aiohttp

import gateway.server.app as app_module
import gateway.server.serving as serving
from gateway.__main__ import main


async def failing_models(request):
    raise RuntimeError("a handler failed on purpose")


def leaking(create_app):
    def create(settings, **kwargs):
        app = create_app(settings, **kwargs)

        async def leak(app):
            key = os.environ["GATEWAY_UPSTREAMS__FAKE__API_KEY"]
            session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"})
            del session  # never closed: aiohttp warns when it is collected

        app.on_startup.append(leak)
        return app

    return create


app_module.list_models = failing_models
serving.create_app = leaking(serving.create_app)
sys.exit(main(sys.argv[1:]))
'''


def identifying_fragments() -> list[str]:
    """Every window of a canary that identifies it (`gateway.redaction`): 16 characters, or 8
    that mix lowercase, uppercase and digits."""
    windows = []
    for canary in CANARIES:
        for length in (MIN_FRAGMENT, 2 * MIN_FRAGMENT):
            for start in range(len(canary) - length + 1):
                window = canary[start : start + length]
                kinds = sum(
                    any(test(char) for char in window)
                    for test in (str.islower, str.isupper, str.isdigit)
                )
                if length > MIN_FRAGMENT or kinds >= 2:
                    windows.append(window)
    return windows


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"


def answer_as_asked() -> fake.Behaviour:
    """A stream, or a JSON completion if the request did not ask for a stream."""
    stream, complete = fake.sse_stream(), fake.json_completion()

    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        return await (stream if call.body.get("stream") is True else complete)(request, call)

    return behave


def script_upstream(upstream: FakeUpstream) -> None:
    """Every way an upstream can fail, echoing the key it was sent where it can."""
    leak = f"invalid key {PROVIDER_KEY} (see https://internal.example/keys?k={PROVIDER_KEY})"
    pieces = f"key {PROVIDER_KEY[4:]}, ends {PROVIDER_KEY[-10:]}"  # fragments, no prefix
    echo = {"X-Echo-Key": PROVIDER_KEY, "Set-Cookie": f"k={PROVIDER_KEY}"}
    upstream.script("ok", answer_as_asked())
    upstream.script("auth-401", fake.status(401, body=openai_error(leak), headers=echo))
    bad = openai_error(f"{leak}; {pieces}", code=PROVIDER_KEY[-12:], param=PROVIDER_KEY)
    upstream.script("bad-400", fake.status(400, body=bad, headers=echo))
    echoed = [
        chunk_event({"content": f"{leak} {pieces}"}, None, "echo", "c1"),
        b"data: " + json.dumps({"error": {"message": f"midstream Bearer {PROVIDER_KEY}"}}).encode()
        + b"\n\n",
    ]  # fmt: skip
    upstream.script("echo", fake.sse_stream(echoed, done=False))
    upstream.script("echo-json", fake.json_completion(f"{leak} {pieces}", model="echo-json"))
    upstream.script(
        "rate-429", fake.status(429, body=openai_error(leak), headers={**echo, "Retry-After": "0"})
    )
    upstream.script("server-500", fake.status(500, body=leak, content_type="text/html"))
    upstream.script("silent", fake.stall_before_first_event())
    upstream.script("stall", fake.stall_after(1))
    upstream.script("reset", fake.cut_rst(1, chunked=True))
    upstream.script("garbage", fake.invalid_json_event())
    claude_leak = anthropic_error("authentication_error", f"bad x-api-key {ANTHROPIC_KEY}")
    claude_pieces = anthropic_error("invalid_request_error", f"key {ANTHROPIC_KEY[4:]}")
    upstream.script("claude-401", fake.status(401, body=claude_leak, headers=echo))
    upstream.script("claude-400", fake.status(400, body=claude_pieces))
    claude_echo = claude.anthropic_events([f"x-api-key {ANTHROPIC_KEY[2:]}"], model="claude-echo")
    upstream.script("claude-echo", fake.sse_stream(claude_echo, done=False))


def write_config(tmp_path: Path, upstream: FakeUpstream) -> Path:
    key_file = tmp_path / "anthropic_key"
    key_file.write_text(ANTHROPIC_KEY + "\n")
    openai_models = ["ok", "auth-401", "bad-400", "rate-429", "server-500", "silent", "stall"]
    openai_models += ["reset", "garbage", "echo", "echo-json"]
    config = {
        "upstreams": {
            "fake": {"kind": "openai", "base_url": upstream.base_url},
            "claude": {
                "kind": "anthropic",
                "base_url": f"http://127.0.0.1:{upstream.port}",
                "api_key_file": str(key_file),
            },
            "nowhere": {"kind": "openai", "base_url": closed_port_url()},
        },
        "routes": [
            *({"model": m, "targets": [{"upstream": "fake"}]} for m in openai_models),
            {"model": "claude-401", "targets": [{"upstream": "claude"}]},
            {"model": "claude-400", "targets": [{"upstream": "claude"}]},
            {"model": "claude-echo", "targets": [{"upstream": "claude"}]},
            {"model": "refused", "targets": [{"upstream": "nowhere"}]},
        ],
        "heartbeat": 1.0,  # a real status before it, an error event after (stall, reset)
        "drain_grace": 0.2,
        "limits": {"body_timeout": 0.5, "head_timeout": 1.0, "max_header_line_bytes": 2048},
        "metrics": {"require_key": True},
        "auth": {
            "clients": [
                {"name": "team-a", "key_hash": hash_key(CLIENT_KEY), "requests_per_minute": 3}
            ]
        },
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Seen:
    """Everything the gateway answered, to search for canaries."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.statuses: dict[str, int] = {}

    def add(self, label: str, status: int, headers: Any, body: bytes) -> None:
        self.statuses[label] = status
        self.parts.append(json.dumps(list(headers.items())))
        self.parts.append(body.decode("utf-8", "replace"))

    @property
    def text(self) -> str:
        return "\n".join(self.parts)


def chat(model: str, *, stream: bool = True) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


async def walk_error_paths(url: str, port: int, seen: Seen) -> None:
    clear = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    named = {"x-api-key": CLIENT_KEY}
    async with aiohttp.ClientSession() as session:

        async def call(label: str, method: str, path: str, **kwargs: Any) -> None:
            async with session.request(method, f"{url}{path}", **kwargs) as response:
                seen.add(label, response.status, response.headers, await response.read())

        models = ("ok", "auth-401", "bad-400", "rate-429", "server-500", "garbage", "refused")
        for model in (*models, "echo", "echo-json"):
            for stream in (True, False):
                await call(f"{model}-{stream}", "POST", "/v1/chat/completions",
                           json=chat(model, stream=stream), headers=clear)  # fmt: skip
        timeouts = {"x-gateway-first-byte-timeout": "0.3", "x-gateway-idle-timeout": "0.3"}
        for model in ("silent", "stall", "reset"):
            await call(model, "POST", "/v1/chat/completions", json=chat(model),
                       headers={**clear, **timeouts})  # fmt: skip
        for model in ("claude-401", "claude-400", "claude-echo"):
            body = {**chat(model), "max_tokens": 8}
            await call(model, "POST", "/v1/messages", json=body, headers=clear)
        # Wrong keys that contain a real one, and the named client over its rate.
        for label, headers in {
            "key-suffixed": {"Authorization": f"Bearer {GATEWAY_KEY}x"},
            "key-prefixed": {"x-api-key": f"x{CLIENT_KEY}"},
            "key-as-basic": {"Authorization": f"Basic {GATEWAY_KEY}"},
        }.items():
            await call(label, "POST", "/v1/chat/completions", json=chat("ok"), headers=headers)
        for index in range(4):
            await call(f"named-{index}", "POST", "/v1/chat/completions", json=chat("ok"),
                       headers=named)  # fmt: skip
        await call("models-raises", "GET", "/v1/models", headers=clear)
        await call("metrics", "GET", "/metrics", headers=clear)
        await call("metrics-no-key", "GET", "/metrics")
    # A key far too long for a header line, and a body that never finishes.
    raw = await trickle(port, head("GET", "/v1/models", {"x-api-key": GATEWAY_KEY * 100}),
                        interval=0, start=10**6)  # fmt: skip
    seen.add("long-key", 0, {}, raw.received)
    body = json.dumps(chat("ok")).encode()
    json_body = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    slow_head = head("POST", "/v1/chat/completions", {**clear, **json_body})
    slow = await trickle(port, slow_head + body, interval=0.05, start=len(slow_head))
    seen.add("slow-body", 0, {}, slow.received)


async def stop_mid_stream(url: str, process: asyncio.subprocess.Process, seen: Seen) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/v1/chat/completions",
            json=chat("stall"),
            headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
        ) as response,
    ):
        first = await response.content.readuntil(b"\n\n")
        process.send_signal(signal.SIGTERM)
        seen.add("shutdown", response.status, response.headers, first + await response.read())


async def ready(url: str) -> bool:
    with contextlib.suppress(aiohttp.ClientError):
        async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as r:
            return r.status == 200
    return False


@pytest.mark.timeout(90)
async def test_no_secret_appears_in_logs_metrics_bodies_or_events(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    script_upstream(upstream)
    config = write_config(tmp_path, upstream)
    launcher = tmp_path / "launch_gateway.py"
    launcher.write_text(LAUNCHER)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_UPSTREAMS__FAKE__API_KEY=PROVIDER_KEY,
        GATEWAY_AUTH__KEYS=json.dumps([GATEWAY_KEY]),
        GATEWAY_LOG__FORMAT="json",
        PYTHONDEVMODE="1",
    )
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-X", "dev", str(launcher), "--config", str(config)),
            *("--port", str(port), "--log-level", "debug"),
            cwd=REPO, env=env, stdout=stderr, stderr=stderr,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    seen = Seen()
    try:
        async with asyncio.timeout(20):
            while not await ready(url):  # noqa: ASYNC110 - another process: nothing to await
                await asyncio.sleep(0.05)
        await walk_error_paths(url, port, seen)
        await stop_mid_stream(url, process, seen)
        async with asyncio.timeout(20):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    logs = stderr_path.read_text(encoding="utf-8", errors="replace")
    print(f"canary test: {len(logs.splitlines())} log lines, {len(seen.statuses)} answers")
    for canary in (*CANARIES, *DIGESTS):
        assert canary not in logs, f"a secret in the gateway's stderr: {canary[:12]}..."
        assert canary not in seen.text, f"a secret in an answer: {canary[:12]}..."
    for fragment in identifying_fragments():
        assert fragment not in logs, f"a fragment of a secret in the stderr: {fragment[:4]}..."
        assert fragment not in seen.text, f"a fragment of a secret in an answer: {fragment[:4]}..."
    assert seen.text.count("[redacted]") >= 8  # each echo was there, and taken out
    # Every path was taken: the answers, and the lines and warnings they leave.
    statuses = seen.statuses
    assert statuses["ok-True"] == statuses["ok-False"] == 200
    assert statuses["auth-401-True"] == statuses["server-500-False"] == 502
    assert (statuses["bad-400-True"], statuses["rate-429-False"]) == (400, 429)
    assert (statuses["refused-False"], statuses["claude-401"]) == (502, 502)
    assert statuses["key-suffixed"] == statuses["key-prefixed"] == statuses["key-as-basic"] == 401
    assert [statuses[f"named-{i}"] for i in range(4)] == [200, 200, 200, 429]
    assert (statuses["models-raises"], statuses["metrics"], statuses["metrics-no-key"]) == (
        500, 200, 401,
    )  # fmt: skip
    assert b"[redacted]" in seen.text.encode()  # the 400's message, its key taken out
    assert "request_timeout" in seen.text
    assert "request_head_too_large" in seen.text
    assert seen.text.count('"code":"server_shutdown"') == 1
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    codes = {line.get("code") for line in lines}
    for code in ("upstream_auth_failed", "connect_failed", "first_byte_timeout", "idle_timeout",
                 "upstream_truncated", "upstream_rate_limited", "key_rate_limited", "unauthorized",
                 "request_timeout", "server_shutdown"):  # fmt: skip
        assert code in codes, code
    assert any(line["event"] == "handler_failed" and "exception" in line for line in lines)
    assert "Unclosed client session" in logs
