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
pause so that a worker that cannot start does not become a tight loop. SIGTERM or SIGINT makes
the supervisor close its copy of the listener and forward SIGTERM, so every worker drains (see
`run_worker`), and the supervisor exits when they have; a second signal kills them at once.
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
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiohttp import web
from prometheus_client.multiprocess import mark_process_dead

from gateway.errors import ServerShutdown
from gateway.server.app import RUNNER_OPTIONS, GatewayRunner, create_app, create_metrics_app
from gateway.server.app_state import SERVER_CONTEXT
from gateway.server.lifecycle import LIFECYCLE
from gateway.server.listener import ListenerSite, listening_socket
from gateway.server.shared_state import announce_store
from gateway.settings import GatewaySettings, ListenSettings

__all__ = ["Listeners", "bind", "run_worker", "serve"]

_log = structlog.get_logger("gateway.server")
_RESPAWN_PAUSE = 1.0  # seconds before a dead worker is replaced
_FINAL_WRITES = 6.0  # interrupted streams' last writes are bounded by the relay at 5 s
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


def bind(listen: ListenSettings, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on `listen` (`gateway.server.listener.listening_socket`)."""
    return listening_socket(listen.host, listen.port, reuse_port=reuse_port)


def bind_group(listen: ListenSettings, count: int) -> list[socket.socket]:
    """`count` sockets listening on one port with `SO_REUSEPORT` (port 0: the first's)."""
    first = bind(listen, reuse_port=True)
    sockets = [first]
    try:
        port = first.getsockname()[1]
        for _ in range(count - 1):
            sockets.append(bind(listen.model_copy(update={"port": port}), reuse_port=True))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def serve(settings: GatewaySettings) -> None:
    """Serve until SIGTERM/SIGINT: in this process, or in `settings.workers` children.

    Several workers get a listening socket each, all on one port (`SO_REUSEPORT`): the kernel
    spreads connections evenly, where one shared socket would hand a burst of connections to
    whichever worker wakes first.
    """
    count = settings.workers
    metrics_listen = settings.metrics.listen if settings.metrics.enabled else None
    mains = bind_group(settings.listen, count) if count > 1 else [bind(settings.listen)]
    metrics: list[socket.socket | None] = [None] * count
    try:
        if metrics_listen is not None:
            metrics = list(
                bind_group(metrics_listen, count) if count > 1 else [bind(metrics_listen)]
            )
    except BaseException:
        for sock in mains:
            sock.close()
        raise
    listeners = [Listeners(main, extra) for main, extra in zip(mains, metrics, strict=True)]
    try:
        if count == 1:
            asyncio.run(run_worker(settings, listeners[0]))
        else:
            asyncio.run(_Supervisor(settings, listeners).run())
    finally:
        for each in listeners:
            each.close()


async def run_worker(settings: GatewaySettings, listeners: Listeners) -> None:
    """Serve `listeners` with one gateway app until SIGTERM/SIGINT, then drain.

    The first signal drains (see `gateway.server.lifecycle`): in-flight requests get up to
    `drain_grace` seconds, then the rest end with a `server_shutdown` error event. A second
    signal ends the process at once.
    """
    app = create_app(settings)
    runners: list[web.AppRunner] = [GatewayRunner(app, **RUNNER_OPTIONS)]
    sockets = [listeners.main]
    if listeners.metrics is not None:
        runners.append(GatewayRunner(create_metrics_app(app), **RUNNER_OPTIONS))
        sockets.append(listeners.metrics)
    signals = _Signals()
    try:
        for runner, sock in zip(runners, sockets, strict=True):
            await runner.setup()
            await ListenerSite(runner, sock).start()
        _log.info("worker_serving", pid=os.getpid())
        announce_store(app)
        await signals.first.wait()
        await _drain(app, runners, settings.drain_grace)
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


async def _stop_accepting(runners: list[web.AppRunner]) -> None:
    """Stop accepting at once; connections already open stay served.

    A request on an open connection gets a retryable 503 with `Connection: close`
    (`drain_middleware`), never silence. Each site is a `ListenerSite`: once its `stop()`
    returns, nothing more is accepted, its socket is closed, and every connection it accepted
    is set up (no asyncio server to race with: see `gateway.server.listener`). (aiohttp's
    `pre_shutdown()` is not used: a request read just as it runs is neither answered nor
    closed until the end of the drain.)
    """
    for runner in runners:
        for site in list(runner.sites):
            await site.stop()


async def _drain(app: web.Application, runners: list[web.AppRunner], grace: float) -> None:
    lifecycle = app[LIFECYCLE]
    lifecycle.begin_drain()
    await _stop_accepting(runners)
    _log.info("drain_started", in_flight=lifecycle.in_flight, grace=grace)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(grace):
            await lifecycle.wait_idle()
    interrupted = lifecycle.in_flight
    if interrupted:
        app[SERVER_CONTEXT].cancel(ServerShutdown())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_FINAL_WRITES):
                await lifecycle.wait_idle()
    _log.info("drain_finished", interrupted=interrupted)


class _Signals:
    """SIGTERM/SIGINT: the first sets `first`; the second ends the process at once."""

    def __init__(self, on_second: Callable[[], None] | None = None) -> None:
        self.first = asyncio.Event()
        self._on_second = on_second
        loop = asyncio.get_running_loop()
        for signum in _STOP_SIGNALS:
            loop.add_signal_handler(signum, self._received, signum)

    def _received(self, signum: int) -> None:
        if not self.first.is_set():
            self.first.set()
            return
        _log.warning("forced_exit", signal=signal.Signals(signum).name)
        if self._on_second is not None:
            self._on_second()
        os._exit(128 + signum)


class _Supervisor:
    """Starts the workers, replaces the ones that die, stops them all on a signal."""

    def __init__(self, settings: GatewaySettings, listeners: list[Listeners]) -> None:
        self._settings = settings
        self._listeners = listeners  # one per worker index
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
        signals = _Signals(on_second=lambda: self._signal_workers(signal.SIGKILL))
        try:
            async with asyncio.TaskGroup() as group:
                for index in range(self._settings.workers):
                    group.create_task(self._keep_worker(index, env, directory))
                await signals.first.wait()
                self._stopping = True
                # Once the workers close theirs, the listener is gone: new connections are
                # refused instead of waiting in a backlog nobody accepts from.
                for listeners in self._listeners:
                    listeners.close()
                self._signal_workers(signal.SIGTERM)
        finally:
            if own_dir:
                shutil.rmtree(directory, ignore_errors=True)

    def _signal_workers(self, signum: int) -> None:
        for process in self._workers.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)

    def _stopped(self) -> bool:
        return self._stopping

    async def _keep_worker(self, index: int, env: dict[str, str], directory: str) -> None:
        """Run worker `index`, replacing it whenever it exits before the supervisor stops."""
        # `load_settings` returns a subclass local to it; the workers get the plain class.
        fields = {name: getattr(self._settings, name) for name in GatewaySettings.model_fields}
        settings = GatewaySettings.model_construct(**fields)
        fds = self._listeners[index].fds()
        payload = pickle.dumps((settings, fds, index))
        message = len(payload).to_bytes(8, "big") + payload
        while not self._stopping:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway.server._worker",
                stdin=asyncio.subprocess.PIPE,
                pass_fds=fds,
                env=env,
                # Its own session: a terminal's Ctrl-C reaches the supervisor only, which
                # forwards one SIGTERM (two signals would force the worker's exit).
                start_new_session=True,
            )
            self._workers[index] = process
            # The pipe stays open: its end (this process gone, however) stops the worker.
            assert process.stdin is not None
            process.stdin.write(message)
            _log.info("worker_started", worker=index, pid=process.pid)
            code = await process.wait()
            process.stdin.close()
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
