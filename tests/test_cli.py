"""`python -m gateway`: start-up errors, `--version`, and one real run as a separate process.

The real run starts the gateway on a free port with JSON logs, waits (bounded) until `/healthz`
answers, streams one `mock` completion, stops the process with SIGTERM by its PID and reads the
`stream_finished` log line it wrote. The process is always stopped in a `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway import __version__

REPO = Path(__file__).resolve().parent.parent
STARTUP_LIMIT = 10.0  # seconds to wait for /healthz; a hang guard, not a speed assertion


def gateway_env() -> dict[str, str]:
    """The test process's environment without any `GATEWAY_*` variable."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("GATEWAY_")}


def run_gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=REPO,
        env=gateway_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def write_config(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("config", "named"),
    [
        pytest.param({"timeouts": {"idle": -1}}, "timeouts.idle", id="negative-timeout"),
        pytest.param({"listen": {"prot": 80}}, "listen.prot", id="unknown-key"),
        pytest.param(
            {"routes": [{"model": "m", "targets": [{"upstream": "nowhere"}]}]},
            "nowhere",
            id="unknown-upstream",
        ),
        pytest.param(
            {"upstreams": {"oai": {"kind": "openai"}}, "routes": []},
            "base_url",
            id="missing-base-url",
        ),
    ],
)
def test_invalid_config_exits_2_naming_the_field(
    tmp_path: Path, config: dict[str, Any], named: str
) -> None:
    result = run_gateway("--config", str(write_config(tmp_path, config)))

    assert result.returncode == 2
    assert "invalid configuration" in result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = run_gateway("--config", str(tmp_path / "absent.yaml"))

    assert result.returncode == 2
    assert "absent.yaml" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param("timeouts: {idle: 3\n", "not valid YAML", id="yaml-syntax-error"),
        pytest.param("- a\n- b\n", "must be a mapping", id="yaml-list"),
    ],
)
def test_unparsable_config_exits_2_without_traceback(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)

    result = run_gateway("--config", str(path))

    assert result.returncode == 2
    assert says in result.stderr
    assert "broken.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_flag_value_exits_2_naming_the_field() -> None:
    result = run_gateway("--port", "70000")

    assert result.returncode == 2
    assert "listen.port" in result.stderr


def test_version_flag_prints_the_version() -> None:
    result = run_gateway("--version")

    assert result.returncode == 0
    assert result.stdout.strip() == f"sse-gateway {__version__}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_healthy(session: aiohttp.ClientSession, url: str, proc: Any) -> None:
    """Poll `/healthz` until it answers 200; fail early if the process exited."""
    async with asyncio.timeout(STARTUP_LIMIT):
        while True:
            if proc.returncode is not None:
                raise AssertionError(f"the gateway exited during start-up ({proc.returncode})")
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with session.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)


async def test_gateway_process_serves_a_mock_stream_and_logs_it_as_json(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path, {"upstreams": {"mock": {"kind": "mock", "mock": {"chunk_delay": 0}}}}
    )
    log_path = tmp_path / "gateway.log"
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "--config",
            str(config),
            "--port",
            str(port),
            "--log-format",
            "json",
            cwd=REPO,
            env=gateway_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, url, proc)
            async with session.post(
                f"{url}/v1/chat/completions",
                json={
                    "model": "mock",
                    "messages": [{"role": "user", "content": "hi"}],
                    "stream": True,
                },
                headers={"x-request-id": "cli-run-1"},
            ) as response:
                assert response.status == 200
                assert response.headers["x-request-id"] == "cli-run-1"
                body = await response.read()
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

    assert body.startswith(b"data: {")
    assert body.endswith(b"data: [DONE]\n\n")
    assert proc.returncode == 0  # SIGTERM is a graceful stop
    records = [
        json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")
    ]
    events = {record.get("event") for record in records}
    assert "gateway_starting" in events
    finished = [r for r in records if r.get("event") == "stream_finished"]
    assert len(finished) == 1
    assert finished[0]["outcome"] == "completed"
    assert finished[0]["request_id"] == "cli-run-1"
    assert finished[0]["route"] == "mock"
    assert finished[0]["status"] == 200
