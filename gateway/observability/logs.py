"""Structured logging: structlog configured once, JSON lines off a terminal, pretty on one.

`configure_logging` is called by the entry point (and may be called again by tests); everything
else just does `structlog.get_logger(__name__)` and binds context. The request-id middleware
binds `request_id` with structlog's contextvars so every line of a request carries it.

Invariants of every line, whoever wrote it (our code through structlog, or a library such as
aiohttp or asyncio through stdlib `logging`, which is routed through the same processors):

- one event is one line: in JSON, strings are escaped by the encoder; on a console, control
  characters (newlines, ANSI escapes, other C0/C1 characters) in values are escaped, so a model
  name a client typed cannot forge a line or repaint a terminal;
- values are length-capped (`MAX_VALUE_CHARS`), so a client cannot make a line huge;
- the same stream and format for both sources (and for Python warnings);
- a line is one `write`, so worker processes sharing stderr never interleave mid-line;
- the active span's `trace_id` and `span_id` when a request is traced (`trace_context`);
- no fragment of the gateway's secrets: the rendered line passes the app's `Redactor` (by
  value, whatever field or nesting carried it: an upstream's message, an exception's text).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog

from gateway.observability.trace_context import add_trace_id
from gateway.redaction import Redactor

__all__ = ["MAX_VALUE_CHARS", "configure_logging", "redact_rendered", "sanitize_values"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
MAX_VALUE_CHARS = 512
#: Keys whose value is multi-line by design (a formatted traceback) and written by us.
_VERBATIM_KEYS = frozenset({"exception", "stack"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or f"\\x{ord(char):02x}"


def _capped(value: str) -> str:
    return value if len(value) <= MAX_VALUE_CHARS else value[:MAX_VALUE_CHARS] + "…"


def _escaped(value: str) -> str:
    return _CONTROL.sub(_escape, _capped(value))


def sanitize_values(*, escape: bool) -> structlog.typing.Processor:
    """A processor capping every string value (one level into dicts and lists) of an event,
    and escaping its control characters if `escape` (the JSON encoder escapes them itself)."""
    clean = _escaped if escape else _capped

    def sanitize(
        logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event_dict.items():
            if key in _VERBATIM_KEYS:
                continue
            if isinstance(value, str):
                event_dict[key] = clean(value)
            elif isinstance(value, dict):
                event_dict[key] = {
                    clean(str(k)): clean(v) if isinstance(v, str) else v for k, v in value.items()
                }
            elif isinstance(value, list | tuple):
                event_dict[key] = [clean(v) if isinstance(v, str) else v for v in value]
        return event_dict

    return sanitize


def redact_rendered(redactor: Redactor) -> structlog.typing.Processor:
    """A processor placed after the renderer: the rendered line without any fragment of a
    secret (one scan of the line; the line itself when it holds none)."""

    def redact(logger: Any, method: str, line: Any) -> Any:
        return redactor.redact_text(line) if isinstance(line, str) else line

    return redact


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
    redactor: Redactor | None = None,
) -> None:
    """Route structlog and stdlib logging (aiohttp's, asyncio's) to one stream in one format,
    with `redactor`'s secrets removed from every line."""
    stream = stream or sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    numeric = _LEVELS.get(level, logging.INFO)
    sanitize = sanitize_values(escape=not as_json)
    last: list[structlog.typing.Processor] = [sanitize, renderer]
    if redactor:
        last.append(redact_rendered(redactor))
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_trace_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            *last,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # One write per line (PrintLogger writes the newline separately): worker processes
        # sharing a pipe cannot interleave inside each other's lines.
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                *last,
            ],
        )
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries are chatty at INFO (aiohttp's access log is off anyway): warnings and up.
    root.setLevel(max(numeric, logging.WARNING))
    # Python warnings (ResourceWarning in dev mode, deprecations) as log lines too, not as
    # plain text on stderr in the middle of a JSON stream. (Off first: a second call would
    # keep whatever `showwarning` was current at the first.)
    logging.captureWarnings(False)
    logging.captureWarnings(True)
