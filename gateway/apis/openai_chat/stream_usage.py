"""Asking an OpenAI stream for its usage: `stream_options.include_usage`.

OpenAI (and the servers compatible with it) report a stream's usage only when the request asks
for it, in one extra chunk after the `finish_reason` chunk: `"choices": []` and `usage`. The
gateway records the tokens of every stream, so a streaming call whose client did not ask gets
the option added (the client's other `stream_options` kept), and the dialect's tracker drops
that extra chunk from the client's stream (`StreamTracker.unasked_usage`): such a client gets
the stream it asked for. A client that asked gets the chunk, as OpenAI sends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["stream_usage_fields"]


def stream_usage_fields(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The fields a streaming call adds to `body` so that its upstream reports the usage, or
    None when the client asked for it already."""
    options = body.get("stream_options")
    if not isinstance(options, Mapping):
        return {"stream_options": {"include_usage": True}}
    if options.get("include_usage") is True:
        return None
    return {"stream_options": {**options, "include_usage": True}}
