"""The entry point of a worker process started by the supervisor in `gateway.server.serving`.

    python -m gateway.server._worker

The supervisor writes the settings, the worker's socket fds and its index, pickled and
length-prefixed, on stdin; it is this process's parent and the pipe's only writer, so the
pickle is trusted. It keeps the pipe open: end of file on stdin means the supervisor is gone
(even SIGKILLed), and the worker then drains and exits as on SIGTERM, so no worker outlives
it. The environment already holds `PROMETHEUS_MULTIPROC_DIR`, set before anything here imports
prometheus-client, as multiprocess mode requires.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import socket
import sys
import threading
from typing import BinaryIO

import structlog

from gateway.observability import configure_logging
from gateway.redaction import Redactor
from gateway.server.serving import Listeners, run_worker
from gateway.settings import GatewaySettings


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise SystemExit("gateway worker: the supervisor went away before the settings came")
        data += chunk
    return data


def _stop_when_supervisor_goes(stream: BinaryIO) -> None:
    """Block until end of file on the supervisor's pipe, then stop like on SIGTERM."""
    while stream.read(4096):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> int:
    stdin = sys.stdin.buffer
    size = int.from_bytes(_read_exactly(stdin, 8), "big")
    settings, fds, index = pickle.loads(_read_exactly(stdin, size))
    assert isinstance(settings, GatewaySettings)
    configure_logging(
        settings.log.level, settings.log.format, redactor=Redactor(settings.secret_values())
    )
    structlog.contextvars.bind_contextvars(worker=index)
    sockets = [socket.socket(fileno=fd) for fd in fds]
    listeners = Listeners(main=sockets[0], metrics=sockets[1] if len(sockets) > 1 else None)
    threading.Thread(target=_stop_when_supervisor_goes, args=(stdin,), daemon=True).start()
    try:
        asyncio.run(run_worker(settings, listeners))
    finally:
        listeners.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
