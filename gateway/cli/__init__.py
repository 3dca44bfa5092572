"""The command line, all of it: `gateway` / `python -m gateway` (read settings, set up logging,
serve) and its subcommands.

    gateway [--config FILE] [--host HOST] [--port PORT] [--workers N] [--heartbeat SECONDS]
            [--metrics-host HOST] [--metrics-port PORT] [--log-level L] [--log-format F]
    gateway [flags] check-config FILE [--json]
    gateway hash-key < key-file

Flags win over the environment, which wins over the config file. An invalid configuration
stops start-up with a message naming each bad field and where its value came from, and exit
status 2. `check-config` validates FILE as `gateway --config FILE` would load it and prints the
effective configuration (`gateway.cli.check_config`). `hash-key` reads a gateway key on
standard input (prompting for it on a terminal, never from the command line, where it would
show in `ps` and shell history) and prints the form the configuration may hold,
`sha256:<hex digest>`.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import typing
from typing import Any

import structlog

from gateway import __version__
from gateway.cli.check_config import check_config
from gateway.observability import configure_logging
from gateway.redaction import Redactor
from gateway.server import serve
from gateway.settings import FLAGS, ConfigError, Flag, load_settings
from gateway.settings.auth import hash_key
from gateway.settings.reference import field_at

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="SSE gateway for LLM chat APIs")
    parser.add_argument(
        "--config", metavar="FILE", help="YAML config file (default: $GATEWAY_CONFIG)"
    )
    for option, field in FLAGS.items():
        _add_flag(parser, option, field)
    parser.add_argument("--version", action="version", version=f"sse-gateway {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check-config",
        help="validate FILE (with the environment and flags) and print the effective config",
        description="Validate FILE as `gateway --config FILE` would load it (environment and "
        "flags included) and print the effective configuration; exit 2 if it is invalid.",
    )
    check.add_argument("file", metavar="FILE", help="YAML config file")
    check.add_argument("--json", action="store_true", help="print JSON")
    commands.add_parser(
        "hash-key",
        help="read a gateway key on stdin, print its sha256:<hex> form for auth settings",
        description="Read a gateway key on standard input (a prompt on a terminal) and print "
        "sha256:<hex digest>, the form auth.keys, auth.keys_file and auth.clients[].key_hash "
        "accept: the configuration then holds no secret.",
    )
    return parser


def _hash_key(err: typing.TextIO) -> int:
    key = getpass.getpass("gateway key: ") if sys.stdin.isatty() else sys.stdin.readline()
    key = key.strip()
    if not key or any(char.isspace() or not char.isprintable() for char in key):
        print("gateway: hash-key: the key is empty or holds spaces", file=err)
        return 2
    print(hash_key(key))
    return 0


_METAVARS = {"heartbeat": "SECONDS", "workers": "N"}


def _add_flag(parser: argparse.ArgumentParser, option: str, field: str) -> None:
    """A flag whose type, choices and help come from the settings field it sets."""
    doc = field_at(field)
    annotation = doc.info.annotation
    description = doc.description.replace("`", "")
    options: dict[str, Any] = {"dest": field, "help": f"sets {field}: {description}"}
    if typing.get_origin(annotation) is typing.Literal:
        options["choices"] = typing.get_args(annotation)
    else:
        kind = "float" if doc.type.startswith("float") else doc.type.split()[0]
        options["type"] = {"int": int, "float": float}.get(kind, str)
        options["metavar"] = _METAVARS.get(field, field.rsplit(".")[-1].upper())
    parser.add_argument(option, **options)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    given = vars(args)
    flags = [Flag(option, field, given[field]) for option, field in FLAGS.items()]
    flags = [flag for flag in flags if flag.value is not None]
    if args.command == "hash-key":
        return _hash_key(sys.stderr)
    if args.command == "check-config":
        if args.config:
            parser.error("check-config reads FILE: leave out --config")
        return check_config(args.file, flags, as_json=args.json, out=sys.stdout, err=sys.stderr)
    try:
        settings = load_settings(args.config, flags=flags)
    except ConfigError as exc:  # also a missing, unreadable or unparsable file
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    configure_logging(
        settings.log.level, settings.log.format, redactor=Redactor(settings.secret_values())
    )
    structlog.get_logger("gateway").info(
        "gateway_starting",
        version=__version__,
        host=settings.listen.host,
        port=settings.listen.port,
        models=len(settings.routes),
    )
    serve(settings)
    return 0
