"""Azure OpenAI's wire, as its docs show it: what the fake upstream sends as an Azure resource.

Azure's answers are OpenAI's with additions: a stream's first chunk carries the prompt's
`prompt_filter_results` and no choices, each choice its `content_filter_results`; a completion
the output filter stopped ends with `finish_reason: "content_filter"`; a prompt the input filter
refused is a 400 whose `error.code` is `content_filter`, with an `innererror` naming the
categories (`content_filter_result`).
"""

from __future__ import annotations

from typing import Any

from tests.support.openai_wire import CREATED, DONE, dumps

__all__ = [
    "SAFE",
    "content_filter_error",
    "embeddings",
    "filtered_chunks",
    "stream_chunks",
]

#: Every category of Azure's filter, none fired.
SAFE: dict[str, Any] = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"


def _chunk(model: str, choice: dict[str, Any]) -> bytes:
    return _event(
        {
            "id": "chatcmpl-azure",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_azure",
            "choices": [choice],
        }
    )


def _prompt_results() -> bytes:
    return _event(
        {
            "id": "",
            "object": "",
            "created": 0,
            "model": "",
            "choices": [],
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": SAFE}],
        }
    )


def stream_chunks(texts: list[str], *, model: str = "gpt-4o-2024-08-06") -> list[bytes]:
    """A whole Azure chat stream: the prompt's filter results, the texts, `stop`, `[DONE]`."""
    events = [_prompt_results()]
    for index, text in enumerate(texts):
        delta = {"role": "assistant", "content": text} if index == 0 else {"content": text}
        choice = {"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}
        events.append(_chunk(model, {**choice, "content_filter_results": SAFE}))
    done = {"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}
    events.append(_chunk(model, {**done, "content_filter_results": {}}))
    return [*events, DONE]


def filtered_chunks(texts: list[str], *, model: str = "gpt-4o-2024-08-06") -> list[bytes]:
    """An Azure chat stream the output filter stopped mid-way: the texts, then a chunk ending
    with `finish_reason: content_filter` and the category that fired, then `[DONE]`."""
    *events, _stop, done = stream_chunks(texts, model=model)
    fired = {**SAFE, "violence": {"filtered": True, "severity": "medium"}}
    stop = {"index": 0, "delta": {}, "finish_reason": "content_filter", "logprobs": None}
    return [*events, _chunk(model, {**stop, "content_filter_results": fired}), done]


def content_filter_error() -> dict[str, Any]:
    """Azure's 400 for a prompt its input filter refused (hate and violence fired)."""
    return {
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
            "content management policy. Please modify your prompt and retry. To learn more "
            "about our content filtering policies please read our documentation: "
            "https://go.microsoft.com/fwlink/?linkid=2198766",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {
                    **SAFE,
                    "hate": {"filtered": True, "severity": "high"},
                    "violence": {"filtered": True, "severity": "medium"},
                    "jailbreak": {"filtered": False, "detected": False},
                },
            },
        }
    }


def embeddings(vectors: list[list[float]], *, model: str = "text-embedding-3-small") -> bytes:
    """Azure's embeddings answer (OpenAI's shape)."""
    return dumps(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": index, "embedding": vector}
                for index, vector in enumerate(vectors)
            ],
            "model": model,
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        }
    )
