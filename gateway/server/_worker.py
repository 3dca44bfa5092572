"""The entry point of a worker process started by the supervisor in `gateway.server.serving`.

    python -m gateway.server._worker   (settings, socket fds and worker index pickled on stdin)

The supervisor is this process's parent and the only writer of its stdin, so the pickle is
trusted. The environment already holds `PROMETHEUS_MULTIPROC_DIR`, set before anything here
imports prometheus-client, as multiprocess mode requires.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import sys

import structlog

from gateway.observability import configure_logging
from gateway.server.serving import Listeners, run_worker
from gateway.settings import GatewaySettings


def main() -> int:
    settings, fds, index = pickle.loads(sys.stdin.buffer.read())
    assert isinstance(settings, GatewaySettings)
    configure_logging(settings.log.level, settings.log.format)
    structlog.contextvars.bind_contextvars(worker=index)
    sockets = [socket.socket(fileno=fd) for fd in fds]
    listeners = Listeners(main=sockets[0], metrics=sockets[1] if len(sockets) > 1 else None)
    try:
        asyncio.run(run_worker(settings, listeners))
    finally:
        listeners.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
