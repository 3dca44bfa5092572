"""Serving the gateway: the listening sockets, one worker, or a supervisor of several.

`serve(settings)` binds the listening sockets itself (the main listener and, if configured, the
metrics listener) and then either serves them in this process (`workers: 1`) or starts
`workers` child processes that inherit the sockets and accept on them in turn (prefork: the
kernel hands each connection to one of the processes waiting on the shared socket). Binding
once in the parent means port 0 works, a port in use fails once and at start-up, and no child
can end up listening somewhere else.

With several workers, the supervisor gives them a fresh `PROMETHEUS_MULTIPROC_DIR` before they
start, so their metrics live in shared files and any worker's `/metrics` answers for all of
them; a worker that dies is marked dead there (its live gauges vanish) and is replaced, with a
pause so that a worker that cannot start does not become a tight loop. SIGTERM or SIGINT stops
the workers (forwarding SIGTERM) and the supervisor exits when they have.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass

import structlog
from aiohttp import web
from prometheus_client.multiprocess import mark_process_dead

from gateway.server.app import RUNNER_OPTIONS, create_app, create_metrics_app
from gateway.settings import GatewaySettings, ListenSettings

__all__ = ["Listeners", "bind", "run_worker", "serve"]

_log = structlog.get_logger("gateway.server")
_RESPAWN_PAUSE = 1.0  # seconds before a dead worker is replaced
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True, slots=True)
class Listeners:
    """The bound, listening sockets a worker serves."""

    main: socket.socket
    metrics: socket.socket | None = None

    def fds(self) -> tuple[int, ...]:
        return tuple(s.fileno() for s in (self.main, self.metrics) if s is not None)

    def close(self) -> None:
        for sock in (self.main, self.metrics):
            if sock is not None:
                sock.close()


def bind(listen: ListenSettings) -> socket.socket:
    """A listening TCP socket on `listen` (IPv4 or IPv6, by the host's address family)."""
    info = socket.getaddrinfo(
        listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, kind, proto, _, address = info[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def serve(settings: GatewaySettings) -> None:
    """Serve until SIGTERM/SIGINT: in this process, or in `settings.workers` children."""
    listeners = Listeners(
        main=bind(settings.listen),
        metrics=bind(settings.metrics.listen)
        if settings.metrics.enabled and settings.metrics.listen
        else None,
    )
    try:
        if settings.workers == 1:
            asyncio.run(run_worker(settings, listeners))
        else:
            asyncio.run(_Supervisor(settings, listeners).run())
    finally:
        listeners.close()


async def run_worker(settings: GatewaySettings, listeners: Listeners) -> None:
    """Serve `listeners` with one gateway app until SIGTERM/SIGINT."""
    app = create_app(settings)
    runners = [web.AppRunner(app, **RUNNER_OPTIONS)]
    sockets = [listeners.main]
    if listeners.metrics is not None:
        runners.append(web.AppRunner(create_metrics_app(app), **RUNNER_OPTIONS))
        sockets.append(listeners.metrics)
    stop = _stop_event()
    try:
        for runner, sock in zip(runners, sockets, strict=True):
            await runner.setup()
            await web.SockSite(runner, sock).start()
        _log.info("worker_serving", pid=os.getpid())
        await stop.wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def _stop_event() -> asyncio.Event:
    """An event set by the first SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    return stop


class _Supervisor:
    """Starts the workers, replaces the ones that die, stops them all on a signal."""

    def __init__(self, settings: GatewaySettings, listeners: Listeners) -> None:
        self._settings = settings
        self._listeners = listeners
        self._stopping = False
        self._workers: dict[int, asyncio.subprocess.Process] = {}

    async def run(self) -> None:
        own_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
        directory = (
            tempfile.mkdtemp(prefix="sse-gateway-metrics-")
            if own_dir
            else os.environ["PROMETHEUS_MULTIPROC_DIR"]
        )
        _clear_metric_files(directory)
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
        stop = _stop_event()
        try:
            async with asyncio.TaskGroup() as group:
                for index in range(self._settings.workers):
                    group.create_task(self._keep_worker(index, env, directory))
                await stop.wait()
                self._stopping = True
                for process in self._workers.values():
                    with contextlib.suppress(ProcessLookupError):
                        process.send_signal(signal.SIGTERM)
        finally:
            if own_dir:
                shutil.rmtree(directory, ignore_errors=True)

    def _stopped(self) -> bool:
        return self._stopping

    async def _keep_worker(self, index: int, env: dict[str, str], directory: str) -> None:
        """Run worker `index`, replacing it whenever it exits before the supervisor stops."""
        # `load_settings` returns a subclass local to it; the workers get the plain class.
        fields = {name: getattr(self._settings, name) for name in GatewaySettings.model_fields}
        settings = GatewaySettings.model_construct(**fields)
        payload = pickle.dumps((settings, self._listeners.fds(), index))
        while not self._stopping:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway.server._worker",
                stdin=asyncio.subprocess.PIPE,
                pass_fds=self._listeners.fds(),
                env=env,
            )
            self._workers[index] = process
            assert process.stdin is not None
            process.stdin.write(payload)
            process.stdin.close()
            _log.info("worker_started", worker=index, pid=process.pid)
            code = await process.wait()
            mark_process_dead(process.pid, directory)  # type: ignore[no-untyped-call]
            if self._stopped():
                break
            _log.error("worker_died", worker=index, pid=process.pid, exit_code=code)
            await asyncio.sleep(_RESPAWN_PAUSE)


def _clear_metric_files(directory: str) -> None:
    """Multiprocess mode needs an empty directory at start: old files are earlier runs'."""
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.unlink(os.path.join(directory, name))
