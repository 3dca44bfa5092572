"""A private Docker engine for the container tests: our own dockerd, stopped by its PID.

`DockerEngine.start()` runs `dockerd` with its own `--data-root` (kept between runs as a cache,
so the base image and build layers survive), `--exec-root`, `--pidfile` and unix socket (both in
a fresh short-lived directory), and waits until it answers. `stop()` ends it by PID, makes sure
the containerd it spawned and any container shims are gone (only processes whose command line
names our exec-root), unmounts what it left mounted, and removes the bridges and iptables state
it created (see `NetworkSnapshot`). Nothing here touches another engine or another process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.host_network import NetworkSnapshot

__all__ = ["DockerEngine", "EngineError"]

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class EngineError(RuntimeError):
    pass


def docker_cli() -> str | None:
    """The docker CLI shipped with the engine (matches its API), else the first on PATH."""
    dockerd = shutil.which("dockerd")
    if dockerd is not None:
        sibling = Path(dockerd).resolve().parent / "docker"
        if sibling.exists():
            return str(sibling)
        for directory in ("/usr/bin", "/usr/sbin"):
            if (Path(directory) / "docker").exists():
                return str(Path(directory) / "docker")
    return shutil.which("docker")


@dataclass
class DockerEngine:
    data_root: Path
    run_dir: Path
    cli: str
    process: subprocess.Popen[bytes]
    network: NetworkSnapshot
    log_path: Path
    problems: list[str] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def exec_root(self) -> Path:
        return self.run_dir / "exec"

    @property
    def env(self) -> dict[str, str]:
        """The environment for docker and docker-compose: this engine, the classic builder."""
        env = dict(os.environ)
        env.pop("DOCKER_CONTEXT", None)
        env.update(
            DOCKER_HOST=f"unix://{self.socket}",
            DOCKER_BUILDKIT="0",
            COMPOSE_DOCKER_CLI_BUILD="0",
            DOCKER_CLI_HINTS="false",
        )
        return env

    @classmethod
    def start(cls, data_root: Path, run_dir: Path) -> DockerEngine:
        cli = docker_cli()
        if shutil.which("dockerd") is None or cli is None:
            raise EngineError("dockerd or the docker CLI is not installed")
        data_root.mkdir(parents=True, exist_ok=True)
        network = NetworkSnapshot.take()
        log_path = run_dir / "dockerd.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    "dockerd",
                    f"--data-root={data_root}",
                    f"--exec-root={run_dir / 'exec'}",
                    f"--host=unix://{run_dir / 'docker.sock'}",
                    f"--pidfile={run_dir / 'dockerd.pid'}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C on the test run is ours to handle, not its
            )
        engine = cls(data_root, run_dir, cli, process, network, log_path)
        try:
            engine._wait_ready()
        except BaseException:
            engine.stop()
            raise
        return engine

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EngineError(f"dockerd exited at start-up:\n{self.log_tail()}")
            if self.socket.exists():
                probe = self.docker("version", "--format", "{{.Server.Version}}", check=False)
                if probe.returncode == 0:
                    return
            time.sleep(0.2)
        raise EngineError(
            f"dockerd did not answer within {START_TIMEOUT:.0f} s:\n{self.log_tail()}"
        )

    def docker(
        self, *args: str, timeout: float = 120, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.cli, *args],
            env=self.env,
            capture_output=True,
            timeout=timeout,
            check=False,
            input=input,
            text=True,
        )
        if check and result.returncode != 0:
            raise EngineError(
                f"docker {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no dockerd log)"

    def stop(self) -> list[str]:
        """Stop dockerd and undo what it did to the host; returns what could not be undone."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.problems.append(f"dockerd ignored SIGTERM for {STOP_TIMEOUT:.0f} s: killed")
                self.process.kill()
                self.process.wait(10)
        self._end_leftover_processes()
        self._unmount_leftovers()
        self.problems.extend(self.network.undo_changes_since())
        return self.problems

    def _end_leftover_processes(self) -> None:
        """containerd and shims that dockerd started for us and did not stop (after a kill)."""
        marker = str(self.exec_root).encode()
        for pid in _pids_whose_command_line_has(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                self.problems.append(f"process {pid} of our engine outlived dockerd: terminated")
        deadline = time.monotonic() + 10
        while _pids_whose_command_line_has(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in _pids_whose_command_line_has(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _unmount_leftovers(self) -> None:
        roots = (str(self.data_root) + "/", str(self.run_dir) + "/")
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(roots)]
        for point in reversed(points):
            result = subprocess.run(
                ["umount", "-l", point], capture_output=True, text=True, check=False, timeout=30
            )
            self.problems.append(f"dockerd left {point} mounted (umount: {result.returncode})")


def _pids_whose_command_line_has(marker: bytes) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in command_line:
            pids.append(int(entry.name))
    return pids
