"""`LogTally`: the gateway's log lines during a mix, kept in bounded memory.

Installed as structlog's only processor (as `structlog.testing.capture_logs` does) for the
duration of a `with`, it hands each request's finished line (`request_finished` or
`stream_finished`) to whoever `expect`ed that request id, counts lines by what the metrics count
(endpoint, route and outcome; category and code; disconnect phase; bytes), and keeps the lines
that must never appear: errors, tracebacks, and finished lines nobody expected or seen twice.
Nothing else is kept, so a soak of tens of thousands of requests logs in constant memory.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, NoReturn

import structlog
from structlog.contextvars import merge_contextvars

__all__ = ["FINISHED", "LogTally"]

FINISHED = ("request_finished", "stream_finished")
_BAD_LEVELS = ("error", "critical", "exception", "fatal")
_KEEP = 20  # bad lines kept for the report (all are counted)


class LogTally:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, str]] = Counter()  # endpoint, route, outcome
        self.errors: Counter[tuple[str, str]] = Counter()  # category, code
        self.phases: Counter[str] = Counter()  # of client disconnects
        self.bytes = 0
        self.finished = 0
        self.bad: list[dict[str, Any]] = []  # errors, tracebacks, unexpected finished lines
        self.bad_count = 0
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    @contextmanager
    def installed(self) -> Iterator[LogTally]:
        """Route every structlog line through this tally (and nowhere else) meanwhile."""
        processors = structlog.get_config()["processors"]
        saved = processors.copy()
        try:
            processors.clear()
            processors.extend([merge_contextvars, self])
            structlog.configure(processors=processors)
            yield self
        finally:
            processors.clear()
            processors.extend(saved)
            structlog.configure(processors=processors)

    def expect(self, request_id: str) -> asyncio.Future[dict[str, Any]]:
        """The future finished line of `request_id` (register before sending the request)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return future

    def forget(self, request_id: str) -> None:
        """Stop waiting for `request_id`; a line that still comes for it is unexpected."""
        self._waiting.pop(request_id, None)

    def __call__(self, logger: Any, method_name: str, event: MutableMapping[str, Any]) -> NoReturn:
        line = dict(event)
        if method_name in _BAD_LEVELS or "exc_info" in line or "exception" in line:
            self._keep_bad({**line, "log_level": method_name})
        if line.get("event") in FINISHED:
            self._finished(line)
        raise structlog.DropEvent

    def _finished(self, line: dict[str, Any]) -> None:
        self.finished += 1
        self.requests[(line["endpoint"], line["route"] or "none", line["outcome"])] += 1
        if line.get("code") is not None:
            self.errors[(line["category"], line["code"])] += 1
        if line.get("code") == "client_disconnected":
            self.phases[line.get("phase", "?")] += 1
        self.bytes += line.get("bytes") or 0
        future = self._waiting.get(line.get("request_id", ""))
        if future is None or future.done():
            self._keep_bad({**line, "problem": "a finished line nobody expected, or a second"})
        else:
            future.set_result(line)

    def _keep_bad(self, line: dict[str, Any]) -> None:
        self.bad_count += 1
        if len(self.bad) < _KEEP:
            self.bad.append(line)
