"""Gateways with failover chains in front of the fake upstream, and what a test measures.

`chain(upstream, *routes, **overrides)` gives `start_gateway(None, **...)` overrides: a `fake`
upstream of kind `openai` (the fake's OpenAI base URL), a `claude` one of kind `anthropic` (the
same fake), a `dead` one nothing listens on, and the given routes. Each target asks the fake for
its own model name, which is how the fake picks the target's fault and how a test tells the
targets' calls apart (`upstream.calls_for(model)`).

`Timed` measures a client's wait; `report()` prints one line per fault (`-s` shows them) - the
figures of the closing note come from these lines.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import UPSTREAM_KEY
from tests.support.fake_upstream import FakeUpstream, UpstreamCall, gaps

__all__ = ["FAST_RETRY", "Timed", "chain", "closed_port", "report", "route", "target"]

#: A retry policy with short waits, so tests of retries take tenths of seconds.
FAST_RETRY: dict[str, Any] = {"attempts": 3, "backoff_initial": 0.05, "backoff_max": 0.2}


def closed_port() -> int:
    """A local TCP port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def target(model: str, upstream: str = "fake", **fields: Any) -> dict[str, Any]:
    return {"upstream": upstream, "model": model, **fields}


def route(name: str, *targets: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": name, "targets": list(targets), **fields}


def chain(upstream: FakeUpstream, *routes: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """`start_gateway(None, **chain(...))` overrides; `retry` defaults to `FAST_RETRY`."""
    return {
        "upstreams": {
            "fake": {"kind": "openai", "base_url": upstream.base_url, "api_key": UPSTREAM_KEY},
            "claude": {
                "kind": "anthropic",
                "base_url": f"http://127.0.0.1:{upstream.port}",
                "api_key": UPSTREAM_KEY,
            },
            "dead": {
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{closed_port()}/v1",
                "api_key": UPSTREAM_KEY,
            },
        },
        "routes": list(routes),
        "retry": FAST_RETRY,
        **overrides,
    }


@dataclass
class Timed:
    """`with Timed() as t: ...` then `t.elapsed` (seconds, monotonic)."""

    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0

    def __enter__(self) -> Timed:
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.monotonic() - self.started


def report(fault: str, client_got: str, elapsed: float, calls: list[UpstreamCall]) -> None:
    """One line for the record: the fault, what the client got, how long, the attempts."""
    spacing = ", ".join(f"{gap:.3f}" for gap in gaps(calls))
    print(
        f"\nFAULT {fault!r}: client got {client_got} after {elapsed:.3f} s; "
        f"{len(calls)} call(s) seen upstream, spaced [{spacing}] s"
    )
