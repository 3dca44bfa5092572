"""OpenAI Chat Completions payloads as an upstream sends them, for the fake upstream.

Deterministic builders (fixed `created`, compact JSON) so tests can compare bytes exactly.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "CREATED",
    "DONE",
    "chunk_event",
    "completion",
    "dumps",
    "openai_chunks",
    "openai_error",
]

DONE = b"data: [DONE]\n\n"
CREATED = 1700000000


def dumps(value: Any) -> bytes:
    """Compact JSON, as OpenAI frames it."""
    return json.dumps(value, separators=(",", ":")).encode()


def chunk_event(delta: dict[str, Any], finish_reason: str | None, model: str, id: str) -> bytes:
    chunk = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    return b"data: " + dumps(chunk) + b"\n\n"


def openai_chunks(
    texts: list[str],
    *,
    finish_reason: str | None = "stop",
    model: str = "fake-model",
    id: str = "chatcmpl-fake",
) -> list[bytes]:
    """OpenAI ``chat.completion.chunk`` events, one per text, plus a final finish chunk.

    The first event's delta carries ``role: assistant``; the final one (only when
    ``finish_reason`` is not None) has an empty delta. ``created`` is always `CREATED`.
    """
    events = [
        chunk_event(
            {"role": "assistant", "content": text} if index == 0 else {"content": text},
            None,
            model,
            id,
        )
        for index, text in enumerate(texts or [""])
    ]
    if finish_reason is not None:
        events.append(chunk_event({}, finish_reason, model, id))
    return events


def openai_error(
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def completion(text: str, model: str) -> bytes:
    completion_tokens = max(1, len(text.split()))
    return dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 5,
                "completion_tokens": completion_tokens,
                "total_tokens": 5 + completion_tokens,
            },
        }
    )
