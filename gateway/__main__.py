"""`gateway` / `python -m gateway`: read settings, set up logging, serve.

    gateway [--config FILE] [--host HOST] [--port PORT] [--log-level LEVEL] [--log-format FMT]

Flags win over the environment, which wins over the config file. An invalid configuration
stops start-up with a message that names the field, and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import structlog
from pydantic import ValidationError

from gateway import __version__
from gateway.observability import configure_logging
from gateway.server import serve
from gateway.settings import load_settings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="SSE gateway for LLM chat APIs")
    parser.add_argument("--config", help="YAML config file (default: $GATEWAY_CONFIG)")
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 8080)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", choices=["auto", "json", "console"])
    parser.add_argument("--version", action="version", version=f"sse-gateway {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    flags: dict[str, Any] = {}
    listen = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if listen:
        flags["listen"] = listen
    log = {k: v for k, v in (("level", args.log_level), ("format", args.log_format)) if v}
    if log:
        flags["log"] = log
    try:
        settings = load_settings(args.config, **flags)
    except ValidationError as exc:
        print(f"gateway: invalid configuration:\n{_describe(exc)}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:  # missing/unreadable/unparsable file
        print(f"gateway: invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log.level, settings.log.format)
    structlog.get_logger("gateway").info(
        "gateway_starting",
        version=__version__,
        host=settings.listen.host,
        port=settings.listen.port,
        models=len(settings.routes),
    )
    serve(settings)
    return 0


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(root)"
        lines.append(f"  {where}: {error['msg']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
