"""Gateway settings with an `anthropic` upstream in front of the fake upstream.

`anthropic_routes(upstream, ...)` gives `start_gateway` overrides with three upstreams - `claude`
(kind `anthropic`, the fake's root as its base URL), `fake` (kind `openai`, the same fake) and
the unpaced `mock` - and routes: each of `models` to `claude`, `GPT` to `fake`, `mock` to `mock`.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import UPSTREAM_KEY
from tests.support.fake_upstream import FakeUpstream

__all__ = ["CLAUDE", "GPT", "MESSAGES", "anthropic_routes", "messages_body"]

CLAUDE = "claude"  # a model routed to the anthropic upstream
GPT = "gpt"  # a model routed to the openai upstream
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "hi there"}]


def anthropic_routes(
    upstream: FakeUpstream, models: tuple[str, ...] = (CLAUDE,), **claude: Any
) -> dict[str, Any]:
    """`start_gateway(None, **anthropic_routes(...))` overrides; `claude` adds upstream settings."""
    return {
        "upstreams": {
            "claude": {
                "kind": "anthropic",
                "base_url": f"http://127.0.0.1:{upstream.port}",
                "api_key": UPSTREAM_KEY,
                **claude,
            },
            "fake": {"kind": "openai", "base_url": upstream.base_url, "api_key": UPSTREAM_KEY},
            "mock": {"kind": "mock", "mock": {"chunk_delay": 0.0}},
        },
        "routes": [
            *({"model": model, "targets": [{"upstream": "claude"}]} for model in models),
            {"model": GPT, "targets": [{"upstream": "fake"}]},
            {"model": "mock", "targets": [{"upstream": "mock"}]},
        ],
    }


def messages_body(model: str = CLAUDE, *, stream: bool = True, **extra: Any) -> dict[str, Any]:
    """A Messages request body."""
    return {"model": model, "max_tokens": 64, "messages": MESSAGES, "stream": stream, **extra}
