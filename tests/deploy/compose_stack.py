"""What the container tests share: one run of a compose stack on a private dockerd.

- `container_session(request, name)`: one container test module's run - waits for the cache's
  lock (one run per cache at a time: the engine's data-root is not shareable), starts a
  private dockerd (`DockerEngine`), and at the end takes the stack down (`docker-compose down
  -v`), prunes day-old dangling images (images are kept in the engine's own data-root, as a
  cache), stops dockerd by PID, removes what it did to the host's network, and prints and
  appends the run time to `<cache>/container-test-times.log`;
- `Compose`: docker-compose on that engine, for one project (`-p`) of one or more files;
- `copy_build_context`, `base_images`: the working tree as a build context (so the repository
  is left untouched), and the base and Prometheus images (from the environment, else the compose
  file's defaults when a registry serves them, else local stand-ins);
- `wait_healthy`, `wait_http`, `http_get`, `prometheus_value`, `free_port`, `Timings`.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from tests.deploy.docker_engine import DockerEngine, docker_cli
from tests.deploy.local_images import (
    ensure_base_image,
    ensure_prometheus_image,
    host_ca_certificates,
)
from tests.deploy.prerequisites import missing_tools, require

__all__ = [
    "HEALTHY_WITHIN",
    "REQUIRE_ENV",
    "Compose",
    "Session",
    "Timings",
    "base_images",
    "cache_dir",
    "compose_default",
    "container_session",
    "copy_build_context",
    "free_port",
    "http_get",
    "module_stack",
    "prepare_build_context",
    "prometheus_value",
    "pulled",
    "wait_healthy",
    "wait_http",
]

ROOT = Path(__file__).resolve().parents[2]
REQUIRE_ENV = "SSE_GATEWAY_REQUIRE_CONTAINER_TEST"
HEALTHY_WITHIN = 120.0


def cache_dir() -> Path:
    """Where the base tarballs and the engine's data-root live between runs."""
    configured = os.environ.get("SSE_GATEWAY_CI_CACHE")
    if configured:
        return Path(configured)
    return Path("/var/cache/sse-gateway-ci")


class Timings(dict[str, float]):
    """Seconds per phase of the run, in order."""

    def phase(self, name: str, since: float) -> float:
        now = time.monotonic()
        self[name] = now - since
        return now


@dataclass
class Compose:
    """docker-compose on `engine` for project `project` of `files` (relative to `project_dir`,
    the copy of the build context)."""

    engine: DockerEngine
    project: str
    project_dir: Path
    files: tuple[str, ...]
    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    def compose_argv(self, *args: str) -> list[str]:
        files = [arg for name in self.files for arg in ("-f", str(self.project_dir / name))]
        return ["docker-compose", "-p", self.project, *files, *args]

    def compose(
        self, *args: str, timeout: float = 300, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.compose_argv(*args),
            cwd=self.project_dir,
            env=self.env | (env or {}),
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

    def logs(self, service: str, tail: int = 50) -> str:
        return self.compose("logs", "--no-color", "--tail", str(tail), service).stdout


@dataclass
class Session:
    """One container test module's engine and scratch space; `stack` is taken down at the end."""

    engine: DockerEngine
    cache: Path
    run_dir: Path
    timings: Timings
    stack: Compose | None = None
    images: str = "not made"


@contextlib.contextmanager
def container_session(
    request: pytest.FixtureRequest, name: str, tools: tuple[str, ...]
) -> Iterator[Session]:
    """A private dockerd for one test module, cleaned up after it (see the module); skipped
    (or failed, with SSE_GATEWAY_REQUIRE_CONTAINER_TEST=1) without `tools` or root."""
    missing = missing_tools(*tools)
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
        session: Session | None = None
        problems: list[str] = []
        try:
            engine = DockerEngine.start(cache / "docker", run_dir)
            timings.phase("dockerd", started)
            session = Session(engine, cache, run_dir, timings)
            yield session
        finally:
            if session is not None and session.stack is not None:
                try:
                    session.stack.compose("down", "-v", "--remove-orphans", "-t", "45", timeout=180)
                except AssertionError as exc:
                    problems.append(str(exc))
            if engine is not None:
                # Keep the build cache (the builder stage's layers are untagged) for a day.
                engine.docker("image", "prune", "-f", "--filter", "until=24h", check=False)
                problems.extend(engine.stop())
            shutil.rmtree(run_dir, ignore_errors=True)
            images = session.images if session is not None else "not made"
            total = time.monotonic() - started
            _record_run_time(request, name, cache, timings, total, cold, images)
    assert not problems, f"cleanup after the {name}:\n" + "\n".join(problems)


S = TypeVar("S", bound=Compose)


def module_stack(
    request: pytest.FixtureRequest,
    name: str,
    tools: tuple[str, ...],
    start: Callable[[Session], S],
) -> Iterator[S]:
    """The body of a module-scoped fixture: a session, the stack `start` brings up in it, the
    tests' own time recorded."""
    with container_session(request, name, tools) as session:
        stack = start(session)
        mark = time.monotonic()
        yield stack
        session.timings.phase("tests", mark)


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


def _record_run_time(
    request: pytest.FixtureRequest,
    name: str,
    cache: Path,
    stack_timings: dict[str, float],
    total: float,
    cold: bool,
    images: str,
) -> None:
    phases = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in stack_timings.items())
    state = "cold" if cold else "warm"
    line = f"{name}: {total:.1f} s total ({state} cache; {phases}; images: {images})"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line("")
            reporter.write_line(line)
    with contextlib.suppress(OSError), (cache / "container-test-times.log").open("a") as log:
        entry = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "test": name,
            "total_s": round(total, 1),
            "cold": cold,
            "images": images,
            **{k: round(v, 1) for k, v in stack_timings.items()},
        }
        log.write(json.dumps(entry) + "\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def copy_build_context(target: Path) -> None:
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


def prepare_build_context(session: Session) -> Path:
    """`<run dir>/project`: a copy of the working tree with the host's CA certificates in
    `docker/ca-certificates/` (the documented way for a build behind an intercepting proxy)."""
    project_dir = session.run_dir / "project"
    copy_build_context(project_dir)
    for cert in host_ca_certificates():
        shutil.copyfile(cert, project_dir / "docker/ca-certificates" / cert.name)
    return project_dir


def compose_default(variable: str, compose_file: Path = ROOT / "docker-compose.yml") -> str:
    """The default `compose_file` gives `${variable:-default}`."""
    match = re.search(r"\$\{" + variable + r":-([^}]+)\}", compose_file.read_text())
    assert match, f"{compose_file.name} has no default for {variable}"
    return match.group(1)


def pulled(engine: DockerEngine, image: str) -> bool:
    try:
        return engine.docker("pull", "-q", image, check=False, timeout=300).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def base_images(engine: DockerEngine, cache: Path) -> tuple[str, str]:
    """Base and Prometheus images: from the environment, else the compose file's defaults when
    a registry serves them, else local stand-ins (debootstrap base, host Prometheus binary)."""
    base = os.environ.get("SSE_GATEWAY_BASE_IMAGE")
    if not base:
        default = compose_default("BASE_IMAGE")
        base = default if pulled(engine, default) else ensure_base_image(engine, cache)
    prometheus = os.environ.get("SSE_GATEWAY_PROMETHEUS_IMAGE")
    if not prometheus:
        default = compose_default("PROMETHEUS_IMAGE")
        prometheus = default if pulled(engine, default) else ensure_prometheus_image(engine, base)
    return base, prometheus


def wait_healthy(stack: Compose, service: str) -> None:
    """Until the HEALTHCHECK of `service`'s container says healthy (bounded)."""
    deadline = time.monotonic() + HEALTHY_WITHIN
    status = ""
    while time.monotonic() < deadline:
        status = stack.inspect(service, "{{.State.Status}} {{.State.Health.Status}}")
        if status == "running healthy":
            return
        if not status.startswith("running"):
            break
        time.sleep(0.5)
    raise AssertionError(
        f"{service} not healthy within {HEALTHY_WITHIN:.0f} s ({status}):\n{stack.logs(service)}"
    )


def http_get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def wait_http(stack: Compose, service: str, url: str) -> None:
    """Until `url` (served by `service`) answers 2xx (bounded)."""
    deadline = time.monotonic() + HEALTHY_WITHIN
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            http_get(url)
            return
        time.sleep(0.5)
    raise AssertionError(
        f"{service} not answering {url} within {HEALTHY_WITHIN:.0f} s:\n{stack.logs(service)}"
    )


def prometheus_value(prometheus_url: str, query: str) -> float | None:
    """The first sample of an instant query, or None when it has none."""
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    answer = json.loads(http_get(url))
    assert answer["status"] == "success", answer
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None
