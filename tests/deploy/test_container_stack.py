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

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.docker_engine import DockerEngine, docker_cli
from tests.deploy.local_images import (
    ensure_base_image,
    ensure_prometheus_image,
    host_ca_certificates,
)
from tests.deploy.prerequisites import missing_tools, require

pytestmark = [pytest.mark.container, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
REQUIRE_ENV = "SSE_GATEWAY_REQUIRE_CONTAINER_TEST"
PROJECT = "ssegwci"
GATEWAY_IMAGE = "localhost/sse-gateway:ci"
TOOLS = ("dockerd", "docker-compose", "debootstrap", "prometheus", "iptables", "ip", "curl", "tar")
HEALTHY_WITHIN = 120.0
SCRAPED_WITHIN = 90.0
DRAIN = 2  # seconds of drain grace the gateway container gets (GATEWAY_DRAIN_GRACE)
WORKERS = 2  # as in production: a supervisor (PID 1) and workers with shared metrics
CHAT = {"model": "mock", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def cache_dir() -> Path:
    """Where the base tarball and the engine's data-root live between runs."""
    configured = os.environ.get("SSE_GATEWAY_CI_CACHE")
    if configured:
        return Path(configured)
    return Path("/var/cache/sse-gateway-ci")


@dataclass
class Stack:
    engine: DockerEngine
    project_dir: Path
    env: dict[str, str]
    gateway_url: str
    metrics_url: str  # the gateway's metrics listener
    prometheus_url: str
    images: str
    timings: dict[str, float] = field(default_factory=dict)

    def compose_argv(self, *args: str) -> list[str]:
        return [
            "docker-compose",
            "-p",
            PROJECT,
            "-f",
            str(self.project_dir / "docker-compose.yml"),
            *args,
        ]

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.compose_argv(*args),
            cwd=self.project_dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"docker-compose {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
            )
        return result

    def container(self, service: str) -> str:
        container_id = self.compose("ps", "-q", service).stdout.strip()
        assert container_id, f"no container for service {service}"
        return container_id

    def inspect(self, service: str, template: str) -> str:
        return self.engine.docker("inspect", "-f", template, self.container(service)).stdout.strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _copy_build_context(target: Path) -> None:
    """The working tree as git sees it (tracked and new files, not ignored ones)."""
    listing = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    if listing.returncode != 0:  # not a git checkout: everything but the usual clutter
        shutil.copytree(
            ROOT,
            target,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(".git", ".venv", "*cache*", ".hypothesis", "__pycache__"),
        )
        return
    for name in listing.stdout.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _compose_default(variable: str) -> str:
    """The default docker-compose.yml gives `${variable:-default}`."""
    compose = (ROOT / "docker-compose.yml").read_text()
    match = re.search(r"\$\{" + variable + r":-([^}]+)\}", compose)
    assert match, f"docker-compose.yml has no default for {variable}"
    return match.group(1)


def _pulled(engine: DockerEngine, image: str) -> bool:
    try:
        return engine.docker("pull", "-q", image, check=False, timeout=300).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _images(engine: DockerEngine, cache: Path) -> tuple[str, str]:
    """Base and Prometheus images: from the environment, else the compose file's defaults when
    a registry serves them, else local stand-ins (debootstrap base, host Prometheus binary)."""
    base = os.environ.get("SSE_GATEWAY_BASE_IMAGE")
    if not base:
        default = _compose_default("BASE_IMAGE")
        base = default if _pulled(engine, default) else ensure_base_image(engine, cache)
    prometheus = os.environ.get("SSE_GATEWAY_PROMETHEUS_IMAGE")
    if not prometheus:
        default = _compose_default("PROMETHEUS_IMAGE")
        prometheus = default if _pulled(engine, default) else ensure_prometheus_image(engine, base)
    return base, prometheus


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One container test at a time per cache (the engine's data-root is not shareable)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "lock").open("w") as lock:
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{directory}/lock held by another run for 600 s") from None
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _wait_healthy(stack: Stack, service: str) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN
    status = ""
    while time.monotonic() < deadline:
        status = stack.inspect(service, "{{.State.Status}} {{.State.Health.Status}}")
        if status == "running healthy":
            return
        if not status.startswith("running"):
            break
        time.sleep(0.5)
    logs = stack.compose("logs", "--no-color", "--tail", "50", service).stdout
    raise AssertionError(f"{service} not healthy within {HEALTHY_WITHIN:.0f} s ({status}):\n{logs}")


def _http_get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def _wait_prometheus_ready(stack: Stack) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            _http_get(f"{stack.prometheus_url}/-/ready")
            return
        time.sleep(0.5)
    logs = stack.compose("logs", "--no-color", "--tail", "50", "prometheus").stdout
    raise AssertionError(f"prometheus not ready within {HEALTHY_WITHIN:.0f} s:\n{logs}")


def _record_run_time(
    request: pytest.FixtureRequest,
    cache: Path,
    stack_timings: dict[str, float],
    total: float,
    cold: bool,
    images: str,
) -> None:
    phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in stack_timings.items())
    state = "cold" if cold else "warm"
    line = f"container test: {total:.1f} s total ({state} cache; {phases}; images: {images})"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line("")
            reporter.write_line(line)
    with contextlib.suppress(OSError), (cache / "container-test-times.log").open("a") as log:
        entry = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "total_s": round(total, 1),
            "cold": cold,
            "images": images,
            **{k: round(v, 1) for k, v in stack_timings.items()},
        }
        log.write(json.dumps(entry) + "\n")


class Timings(dict[str, float]):
    """Seconds per phase of the run, in order."""

    def phase(self, name: str, since: float) -> float:
        now = time.monotonic()
        self[name] = now - since
        return now


def _start_stack(engine: DockerEngine, cache: Path, run_dir: Path, timings: Timings) -> Stack:
    """Images, a copy of the build context with the host's CA, compose build and up."""
    mark = time.monotonic()
    base, prometheus = _images(engine, cache)
    mark = timings.phase("images", mark)
    project_dir = run_dir / "project"
    _copy_build_context(project_dir)
    for cert in host_ca_certificates():
        shutil.copyfile(cert, project_dir / "docker/ca-certificates" / cert.name)
    gateway_port, prometheus_port, metrics_port = _free_port(), _free_port(), _free_port()
    env = engine.env | {
        "BASE_IMAGE": base,
        "GATEWAY_IMAGE": GATEWAY_IMAGE,
        "PROMETHEUS_IMAGE": prometheus,
        "GATEWAY_PORT": str(gateway_port),
        "GATEWAY_METRICS_PORT": str(metrics_port),
        "PROMETHEUS_PORT": str(prometheus_port),
        "GRAFANA_PORT": str(_free_port()),
        "GATEWAY_CONFIG_FILE": "",
        "GATEWAY_DRAIN_GRACE": str(DRAIN),
        "GATEWAY_WORKERS": str(WORKERS),
        "OPENAI_API_KEY": "",
    }
    stack = Stack(
        engine,
        project_dir,
        env,
        gateway_url=f"http://127.0.0.1:{gateway_port}",
        metrics_url=f"http://127.0.0.1:{metrics_port}",
        prometheus_url=f"http://127.0.0.1:{prometheus_port}",
        images=f"{base}, {prometheus}",
        timings=timings,
    )
    stack.compose("build", "gateway", timeout=900)
    mark = timings.phase("gateway build", mark)
    stack.compose("up", "-d", "gateway", "prometheus")
    _wait_healthy(stack, "gateway")
    _wait_prometheus_ready(stack)
    timings.phase("up until healthy", mark)
    return stack


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    missing = missing_tools(*TOOLS)
    if docker_cli() is None:
        missing.append("docker")
    require(f"not installed: {', '.join(missing)}" if missing else None, env_var=REQUIRE_ENV)
    require(None if os.geteuid() == 0 else "dockerd needs root", env_var=REQUIRE_ENV)

    cache = cache_dir()
    timings = Timings()
    waiting = time.monotonic()
    with _locked(cache):
        started = timings.phase("waiting for another run", waiting)
        cold = not any(cache.glob("base-*.tar"))
        run_dir = Path(tempfile.mkdtemp(prefix="sgw-", dir="/tmp"))  # short: socket paths
        engine: DockerEngine | None = None
        stack: Stack | None = None
        problems: list[str] = []
        try:
            engine = DockerEngine.start(cache / "docker", run_dir)
            timings.phase("dockerd", started)
            stack = _start_stack(engine, cache, run_dir, timings)
            mark = time.monotonic()
            yield stack
            timings.phase("tests", mark)
        finally:
            if stack is not None:
                try:
                    stack.compose("down", "-v", "--remove-orphans", "-t", "45", timeout=180)
                except AssertionError as exc:
                    problems.append(str(exc))
            if engine is not None:
                # Keep the build cache (the builder stage's layers are untagged) for a day.
                engine.docker("image", "prune", "-f", "--filter", "until=24h", check=False)
                problems.extend(engine.stop())
            shutil.rmtree(run_dir, ignore_errors=True)
            images = stack.images if stack is not None else "not made"
            _record_run_time(request, cache, timings, time.monotonic() - started, cold, images)
    assert not problems, "cleanup after the container test:\n" + "\n".join(problems)


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


def _prometheus_value(stack: Stack, query: str) -> float | None:
    url = f"{stack.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    answer = json.loads(_http_get(url))
    assert answer["status"] == "success", answer
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


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
    before = _completed_requests(_http_get(f"{stack.metrics_url}/metrics").decode())
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
        value = _prometheus_value(stack, 'sum(gateway_requests_total{outcome="completed"})')
        if value is not None and value >= before + sent:
            break
        time.sleep(1)
    stack.timings["scraped after"] = time.monotonic() - started
    up = _prometheus_value(stack, 'up{job="sse-gateway"}')
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
