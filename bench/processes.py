"""The processes a bench run starts: the mock upstream, the gateway, nginx, redis-server.

Each is a `Service`: a child started in its own session, pinned to its cores with
`sched_setaffinity` before it execs (its children inherit the mask), logging to a file in the
run's work directory, and stopped by its own PID (SIGTERM, then SIGKILL after a grace period;
descendants seen while it ran are killed by PID too if they outlive it). The gateway and nginx
are started from clean settings: no GATEWAY_* variable of the caller leaks in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.loadgen import Address, fetch_json
from bench.system import ProcessTree
from gateway.settings.auth import hash_key

__all__ = [
    "GatewayOptions",
    "Service",
    "free_port",
    "nginx_path",
    "redis_path",
    "redis_url",
    "start_gateway",
    "start_nginx",
    "start_redis",
    "start_upstream",
]

_READY_TIMEOUT = 60.0  # a traced gateway (bench.memory) starts slowly


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (tiny race until the service binds it)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _pinned(cores: frozenset[int] | None) -> Callable[[], None] | None:
    if cores is None:
        return None
    mask = set(cores)
    return lambda: os.sched_setaffinity(0, mask)


@dataclass(slots=True)
class Service:
    """A started child process and where it listens."""

    name: str
    process: subprocess.Popen[bytes]
    address: Address
    log_path: Path
    seen: set[int] = field(default_factory=set)

    def tree(self) -> ProcessTree:
        tree = ProcessTree(self.process.pid).refresh()
        self.seen.update(tree.pids)
        return tree

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def log_lines(self) -> int:
        with contextlib.suppress(OSError):
            return len(self.log_path.read_text(errors="replace").splitlines())
        return 0

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, wait up to `grace`, then SIGKILL; leftovers seen earlier are killed by PID.
        The pipe of a service that reports on stdout (the upstream) is closed."""
        with contextlib.suppress(OSError):
            self.tree()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in self.seen - {self.process.pid}:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}").exists():
                    os.kill(pid, signal.SIGKILL)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _spawn(
    name: str,
    argv: list[str],
    workdir: Path,
    cores: frozenset[int] | None,
    *,
    env: dict[str, str] | None = None,
    pipe_stdout: bool = False,
) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE if pipe_stdout else log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_pinned(cores),
            env=env,
        )
    return process, log_path


def start_upstream(
    hosts: list[str], workdir: Path, cores: frozenset[int] | None, use_uvloop: bool
) -> Service:
    """The mock upstream on every host (same port); returns once it listens."""
    argv = [sys.executable, "-m", "bench.upstream", "--hosts", ",".join(hosts)]
    if not use_uvloop:
        argv.append("--no-uvloop")
    process, log_path = _spawn("upstream", argv, workdir, cores, pipe_stdout=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait()
        raise RuntimeError(f"the upstream did not start:\n{log_path.read_text()}")
    port = int(json.loads(line)["port"])
    return Service("upstream", process, Address(hosts[0], port), log_path)


def _clean_env() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GATEWAY_") and key != "PROMETHEUS_MULTIPROC_DIR"
    }


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """What a bench gateway's configuration changes from the plain relay's.

    `kind`: the upstream's (`anthropic`: the bench upstream's `/v1/messages`, so a chat route
    translates); `client_key`: a gateway key (`auth.clients`, by its digest) with a
    `requests_per_minute` limit, which every request must present and which admission counts;
    `redis_url`: the shared state in that Redis (`GATEWAY_STATE__REDIS_URL`): the key's limit
    is then one Redis round trip per request."""

    kind: Literal["openai", "anthropic"] = "openai"
    client_key: str | None = None
    requests_per_minute: int = 1_000_000_000
    redis_url: str | None = None

    def config(self, upstream: Address) -> str:
        base = f"http://{upstream.host}:{upstream.port}" + ("/v1" if self.kind == "openai" else "")
        lines = [
            "heartbeat: null",
            "upstreams:",
            f'  up: {{kind: {self.kind}, base_url: "{base}", max_connections: 100000,'
            " api_key_env: BENCH_UPSTREAM_KEY}",
            "routes:",
            "  - {model: m, targets: [{upstream: up}]}",
        ]
        if self.client_key is not None:
            lines += [
                "auth:",
                "  clients:",
                f'    - {{name: bench, key_hash: "{hash_key(self.client_key)}",'
                f" requests_per_minute: {self.requests_per_minute}}}",
                "metrics: {require_key: false}",  # the bench reads /metrics without a key
            ]
        return "\n".join([*lines, ""])

    def upstream_key(self) -> str:
        """A key of a real key's shape and length for the upstream's kind, as in production:
        every relayed write is scanned for its fragments (gateway.redaction), and the figures
        include that cost."""
        if self.kind == "anthropic":
            return "sk-ant-api03-" + secrets.token_urlsafe(71)
        return "sk-proj-" + secrets.token_urlsafe(117)

    def env(self) -> dict[str, str]:
        env = {"BENCH_UPSTREAM_KEY": self.upstream_key()}
        if self.redis_url is not None:
            env["GATEWAY_STATE__REDIS_URL"] = self.redis_url
        return env


async def start_gateway(
    name: str,
    upstream: Address,
    workers: int,
    workdir: Path,
    cores: frozenset[int] | None,
    *,
    module: str = "gateway",
    env: dict[str, str] | None = None,
    options: GatewayOptions | None = None,
) -> Service:
    """`python -m gateway` with one route, model `m` -> the upstream; returns once healthy.

    `module` runs another entry point with the gateway's flags (`bench.traced_gateway`);
    `options` change the configuration (`GatewayOptions`; default: the plain relay)."""
    options = options or GatewayOptions()
    config = workdir / f"{name}.yaml"
    config.write_text(options.config(upstream))
    port = free_port()
    argv = [sys.executable, "-m", module, "--config", str(config), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--log-level", "warning", "--workers", str(workers)]
    process, log_path = _spawn(
        name, argv, workdir, cores, env={**_clean_env(), **options.env(), **(env or {})}
    )
    service = Service(name, process, Address("127.0.0.1", port), log_path)
    await _wait_healthy(service)
    if workers > 1:  # all workers up: each answers once the kernel hands it a connection
        await asyncio.sleep(1.0)
    return service


async def start_redis(workdir: Path, cores: frozenset[int] | None) -> Service:
    """`redis-server` on a free port of 127.0.0.1, nothing saved to disk; returns once it
    answers `PING`. Its address is the service's (`redis_url`)."""
    binary = redis_path()
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    argv += ["no", "--dir", str(workdir), "--daemonize", "no", "--loglevel", "warning"]
    process, log_path = _spawn("redis", argv, workdir, cores)
    service = Service("redis", process, Address("127.0.0.1", port), log_path)
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"PING\r\n")
            answer = await asyncio.wait_for(reader.readline(), 1.0)
            writer.close()
            if answer.startswith(b"+PONG"):
                return service
        await asyncio.sleep(0.05)
    service.stop()
    raise RuntimeError(f"redis-server did not start:\n{service.log_tail()}")


def redis_path() -> str | None:
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server") if Path(p).exists()),
        None,
    )


def redis_url(redis: Service) -> str:
    return f"redis://{redis.address.host}:{redis.address.port}/0"


def nginx_path() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


#: One worker (one core, like the gateway's single worker); 24,000 connections cover the 10,000
#: streams of scenario d (client and upstream side each) without preallocating much more.
_NGINX_CONF = """\
worker_processes 1;
worker_rlimit_nofile 200000;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
{user}
events {{ worker_connections 24000; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {dir}/nginx-body;
  proxy_temp_path {dir}/nginx-proxy;
  fastcgi_temp_path {dir}/nginx-fastcgi;
  uwsgi_temp_path {dir}/nginx-uwsgi;
  scgi_temp_path {dir}/nginx-scgi;
  keepalive_requests 1000000;
  upstream up {{ server {upstream}; keepalive 1024; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_cache off;
      proxy_read_timeout 600s;
    }}
  }}
}}
"""


async def start_nginx(
    upstream: Address, workdir: Path, cores: frozenset[int] | None
) -> Service | None:
    """nginx (one worker, proxy_buffering off, keep-alive upstream), or None if not installed."""
    binary = nginx_path()
    if binary is None:
        return None
    port = free_port()
    conf = workdir / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(
        _NGINX_CONF.format(
            dir=workdir, port=port, upstream=f"{upstream.host}:{upstream.port}", user=user
        )
    )
    argv = [binary, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "nginx-error.log")]
    process, log_path = _spawn("nginx", argv, workdir, cores)
    service = Service("nginx", process, Address("127.0.0.1", port), log_path)
    await _wait_listening(service)
    return service


async def _wait_healthy(service: Service) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            break
        with contextlib.suppress(OSError, RuntimeError, TimeoutError, ValueError):
            async with asyncio.timeout(1.0):
                await fetch_json(service.address, "/healthz")
            return
        await asyncio.sleep(0.05)
    service.stop()
    raise RuntimeError(f"{service.name} did not become healthy:\n{service.log_tail()}")


async def _wait_listening(service: Service) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline and service.process.poll() is None:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(service.address.host, service.address.port)
            writer.close()
            return
        await asyncio.sleep(0.05)
    service.stop()
    raise RuntimeError(f"{service.name} did not start listening:\n{service.log_tail()}")
