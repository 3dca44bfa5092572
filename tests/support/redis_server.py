"""A real `redis-server` for the tests of the shared state: started on a free port of
127.0.0.1, with nothing saved to disk, and stopped by its PID.

`RedisServer` can also be killed (`kill()`: SIGKILL, as a crashed host), started again on the
same port (`start()`: empty, as a restarted Redis without persistence), paused and resumed
(`pause()` / `resume()`: SIGSTOP / SIGCONT - a Redis that accepts connections and answers
nothing). Without `redis-server` on the PATH the tests skip, unless
`SSE_GATEWAY_REQUIRE_REDIS_TEST=1` (CI) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

__all__ = ["REQUIRE_ENV", "RedisServer", "redis_server_or_skip"]

REQUIRE_ENV = "SSE_GATEWAY_REQUIRE_REDIS_TEST"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One `redis-server` process on a port of its own (see the module)."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.port = _free_port()
        self.directory = tempfile.mkdtemp(prefix="gateway-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (again) on its port and wait until it answers `PING`."""
        self.process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, and wait for it to be gone."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a paused one must die too
            process.kill()
            process.wait(10)

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def redis_server_or_skip() -> Iterator[RedisServer]:
    """A started `RedisServer`, stopped afterwards (for fixtures); skips without one."""
    executable = shutil.which("redis-server")
    if executable is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"redis-server is not installed (and {REQUIRE_ENV}=1 requires it)")
        pytest.skip(f"redis-server is not installed; set {REQUIRE_ENV}=1 to make this a failure")
    server = RedisServer(executable)
    try:
        server.start()
        yield server
    finally:
        server.stop()
