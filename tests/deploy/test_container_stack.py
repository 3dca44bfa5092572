"""The container end-to-end test: the real image, run by a real dockerd and docker-compose.

What it does, on a machine that reaches no image registry (like CI):

1. starts a private dockerd (own data-root under the cache dir, own exec-root, socket and
   pidfile in a temp dir; see `DockerEngine`);
2. makes a stand-in for `python:3.12-slim` with debootstrap (cached as a tarball, and as an
   image in the engine's data-root) WITHOUT the host's extra CA certificates - like the real
   `python:3.12-slim` - and gives the build those certificates the documented way: `*.crt` files
   in `docker/ca-certificates/` of the build context (a copy of the working tree, so the repo is
   left untouched). pip inside the build only reaches PyPI through this machine's intercepting
   proxy if that feature works;
3. makes a Prometheus image from the host's Debian `prometheus` binary on the same base, and
   passes it to the compose file through `PROMETHEUS_IMAGE`;
4. `docker-compose build gateway` with `BASE_IMAGE` set, `docker-compose up -d gateway
   prometheus`, waits (bounded) until the gateway's HEALTHCHECK says healthy;
5. streams completions through the container with `curl -N` and the `openai` SDK, checks the
   logs are JSON, the process is not root, Prometheus has scraped a non-zero
   `gateway_requests_total`, and `docker-compose stop` (SIGTERM) during a stream drains the
   gateway: the stream ends with a `server_shutdown` event and the process exits 0.

Grafana is not started: no Grafana image exists locally and none can be pulled or built from
Debian's packages here. The dashboard is validated instead by test_prometheus_scrape.py (every
PromQL expression evaluated by a real Prometheus against the real exposition) and by
test_manifests.py (structure, provisioning).

Teardown: `docker-compose down -v`, day-old dangling images pruned (images are kept only in
the engine's own data-root, as a cache), dockerd stopped by PID, the bridges and iptables state it
created removed. The run time is printed and appended to `<cache>/container-test-times.log`.

Skipped when docker/dockerd (or the other tools) are missing, unless
SSE_GATEWAY_REQUIRE_CONTAINER_TEST=1, which CI sets: then it fails.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.compose_stack import (
    Compose,
    Session,
    base_images,
    free_port,
    http_get,
    module_stack,
    prepare_build_context,
    prometheus_value,
    wait_healthy,
    wait_http,
)

pytestmark = [pytest.mark.container, pytest.mark.timeout(900)]

PROJECT = "ssegwci"
GATEWAY_IMAGE = "localhost/sse-gateway:ci"
TOOLS = ("dockerd", "docker-compose", "debootstrap", "prometheus", "iptables", "ip", "curl", "tar")
SCRAPED_WITHIN = 90.0
DRAIN = 2  # seconds of drain grace the gateway container gets (GATEWAY_DRAIN_GRACE)
WORKERS = 2  # as in production: a supervisor (PID 1) and workers with shared metrics
CHAT = {"model": "mock", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Stack(Compose):
    gateway_url: str = ""
    metrics_url: str = ""  # the gateway's metrics listener
    prometheus_url: str = ""
    images: str = ""


def _start_stack(session: Session) -> Stack:
    """Images, a copy of the build context with the host's CA, compose build and up."""
    engine, timings = session.engine, session.timings
    mark = time.monotonic()
    base, prometheus = base_images(engine, session.cache)
    session.images = f"{base}, {prometheus}"
    mark = timings.phase("images", mark)
    project_dir = prepare_build_context(session)
    gateway_port, prometheus_port, metrics_port = free_port(), free_port(), free_port()
    env = engine.env | {
        "BASE_IMAGE": base,
        "GATEWAY_IMAGE": GATEWAY_IMAGE,
        "PROMETHEUS_IMAGE": prometheus,
        "GATEWAY_PORT": str(gateway_port),
        "GATEWAY_METRICS_PORT": str(metrics_port),
        "PROMETHEUS_PORT": str(prometheus_port),
        "GRAFANA_PORT": str(free_port()),
        "GATEWAY_CONFIG_FILE": "",
        "GATEWAY_DRAIN_GRACE": str(DRAIN),
        "GATEWAY_WORKERS": str(WORKERS),
        "OPENAI_API_KEY": "",
    }
    stack = Stack(
        engine,
        PROJECT,
        project_dir,
        ("docker-compose.yml",),
        env,
        timings,
        gateway_url=f"http://127.0.0.1:{gateway_port}",
        metrics_url=f"http://127.0.0.1:{metrics_port}",
        prometheus_url=f"http://127.0.0.1:{prometheus_port}",
        images=session.images,
    )
    session.stack = stack
    stack.compose("build", "gateway", timeout=900)
    mark = timings.phase("gateway build", mark)
    stack.compose("up", "-d", "gateway", "prometheus")
    wait_healthy(stack, "gateway")
    wait_http(stack, "prometheus", f"{stack.prometheus_url}/-/ready")
    timings.phase("up until healthy", mark)
    return stack


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    yield from module_stack(request, "container test", TOOLS, _start_stack)


def test_gateway_container_is_healthy_and_runs_as_non_root(stack: Stack) -> None:
    assert stack.inspect("gateway", "{{.State.Health.Status}}") == "healthy"
    assert stack.inspect("gateway", "{{.HostConfig.ReadonlyRootfs}}") == "true"
    processes = stack.engine.docker("top", stack.container("gateway"), "-o", "pid,args").stdout
    gateways = [line for line in processes.splitlines()[1:] if "gateway" in line]
    assert len(gateways) == 1 + WORKERS, processes  # the supervisor and its workers
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(f"{stack.gateway_url}{path}", timeout=5) as response:
            assert response.status == 200, path
    assert stack.inspect("gateway", "{{.Config.User}}") == "10001:10001"
    uid = stack.engine.docker("exec", stack.container("gateway"), "id", "-u").stdout.strip()
    assert uid == "10001"
    entrypoint = json.loads(stack.inspect("gateway", "{{json .Config.Entrypoint}}"))
    assert entrypoint == ["/opt/venv/bin/gateway"]


def test_curl_streams_a_completion_through_the_container(stack: Stack) -> None:
    result = subprocess.run(
        [
            "curl",
            "-N",
            "-sS",
            "-i",
            "--max-time",
            "30",
            f"{stack.gateway_url}/v1/chat/completions",
            "-H",
            "content-type: application/json",
            "-d",
            json.dumps(CHAT),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.replace("\r\n", "\n").partition("\n\n")
    assert head.startswith("HTTP/1.1 200"), head
    assert "content-type: text/event-stream" in head.lower()
    events = [block for block in body.split("\n\n") if block.strip()]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    assert len(chunks) >= 3
    assert text.strip()


def test_openai_sdk_streams_a_completion_through_the_container(stack: Stack) -> None:
    client = OpenAI(base_url=f"{stack.gateway_url}/v1", api_key="unused", max_retries=0, timeout=30)
    with client:
        stream = client.chat.completions.create(
            model="mock", stream=True, messages=[{"role": "user", "content": "hi"}]
        )
        parts: list[str] = []
        finish_reasons: list[str] = []
        for chunk in stream:
            for choice in chunk.choices:
                parts.append(choice.delta.content or "")
                if choice.finish_reason:
                    finish_reasons.append(choice.finish_reason)
    assert "".join(parts).strip()
    assert finish_reasons == ["stop"]


def test_gateway_logs_are_json_lines(stack: Stack) -> None:
    logs = stack.engine.docker("logs", stack.container("gateway"))
    records: list[dict[str, Any]] = []
    for line in (logs.stdout + logs.stderr).splitlines():
        if line.strip():
            records.append(json.loads(line))
    assert records
    assert any(record.get("event") == "gateway_starting" for record in records)
    assert all("timestamp" in record and "level" in record for record in records)


def _completed_requests(exposition: str) -> float:
    """The gateway's own count of completed requests (all workers), from its /metrics."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "gateway_requests_total" and sample.labels["outcome"] == "completed"
    )


def test_prometheus_scrapes_the_gateway_container(stack: Stack) -> None:
    """Prometheus (in its container) scrapes gateway:9464; the count covers every worker."""
    before = _completed_requests(http_get(f"{stack.metrics_url}/metrics").decode())
    sent = 4
    for _ in range(sent):
        request = urllib.request.Request(
            f"{stack.gateway_url}/v1/chat/completions",
            data=json.dumps(CHAT).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.read().rstrip().endswith(b"data: [DONE]")
    started = time.monotonic()
    value: float | None = None
    while time.monotonic() - started < SCRAPED_WITHIN:
        value = prometheus_value(
            stack.prometheus_url, 'sum(gateway_requests_total{outcome="completed"})'
        )
        if value is not None and value >= before + sent:
            break
        time.sleep(1)
    stack.timings["scraped after"] = time.monotonic() - started
    up = prometheus_value(stack.prometheus_url, 'up{job="sse-gateway"}')
    assert up == 1, f"Prometheus cannot scrape gateway:9464/metrics (up={up})"
    assert value is not None, f"gateway_requests_total not scraped within {SCRAPED_WITHIN:.0f} s"
    assert value >= before + sent


def test_sigterm_drains_the_gateway_and_it_exits_cleanly(stack: Stack) -> None:
    """Exec-form entrypoint: `docker stop` sends SIGTERM to the gateway itself (PID 1), which
    drains: a stream still running after the grace period (2 s here) ends with one
    `server_shutdown` error event, and the process exits 0 long before SIGKILL."""
    slow = {**CHAT, "model": "mock-slow"}
    request = urllib.request.Request(
        f"{stack.gateway_url}/v1/chat/completions",
        data=json.dumps(slow).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.readline().startswith(b"data: {")  # the stream is under way
        started = time.monotonic()
        stop = subprocess.Popen(
            stack.compose_argv("stop", "-t", "45", "gateway"),
            cwd=stack.project_dir,
            env=stack.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            rest = response.read().decode()
        finally:
            _, stop_errors = stop.communicate(timeout=120)
    elapsed = time.monotonic() - started
    stack.timings["SIGTERM stop"] = elapsed
    assert stop.returncode == 0, stop_errors.decode()
    events = [block for block in rest.replace("\r\n", "\n").split("\n\n") if block.strip()]
    assert events[-1].startswith("event: error\n"), events[-3:]
    error = json.loads(events[-1].split("data: ", 1)[1])
    assert error["error"]["code"] == "server_shutdown"
    assert "data: [DONE]" not in rest
    assert stack.inspect("gateway", "{{.State.Status}}") == "exited"
    exit_code = stack.inspect("gateway", "{{.State.ExitCode}}")
    assert exit_code == "0", f"gateway exited {exit_code} after {elapsed:.1f} s (137: SIGKILL)"
    assert elapsed < 20, f"SIGTERM took {elapsed:.1f} s to stop the gateway (grace: {DRAIN} s)"
