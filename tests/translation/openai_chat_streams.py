"""Chat Completions streams in the exact shapes real servers send (recorded from OpenAI,
DeepSeek and vLLM, ids and fingerprints shortened), and the helpers that read them.

OpenAI's chunks carry `service_tier`, `system_fingerprint`, `logprobs: null` and, when the
request asked `stream_options.include_usage`, `"usage": null` on every chunk but the last,
which has `"choices": []`. DeepSeek puts `reasoning_content` in the delta and the usage on the
finish chunk; vLLM names the reasoning `reasoning` and the matched stop string `stop_reason`.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.streaming import SSEDecoder
from gateway.translation import AnswerEvent
from gateway.translation.openai_chat import CODEC

ID = "chatcmpl-BvX2k9"
CREATED = 1741570283
MODEL = "gpt-4o-2024-08-06"
DONE = b"data: [DONE]\n\n"


def frame(value: Any) -> bytes:
    return b"data: " + json.dumps(value, separators=(",", ":")).encode() + b"\n\n"


#: What every one of OpenAI's chunks begins with.
HEAD: dict[str, Any] = {
    "id": ID,
    "object": "chat.completion.chunk",
    "created": CREATED,
    "model": MODEL,
    "service_tier": "default",
    "system_fingerprint": "fp_f33640a400",
}


def chunk(
    delta: dict[str, Any],
    finish_reason: str | None = None,
    *,
    usage: Any = None,
    model: str = MODEL,
    **choice: Any,
) -> bytes:
    """One of OpenAI's `chat.completion.chunk`s for choice 0."""
    choice = {
        "index": 0,
        "delta": delta,
        "logprobs": None,
        "finish_reason": finish_reason,
        **choice,
    }
    return frame({**HEAD, "model": model, "choices": [choice], "usage": usage})


def usage_chunk(usage: dict[str, Any], model: str = MODEL) -> bytes:
    """OpenAI's last chunk when the request asked for the usage."""
    return frame({**HEAD, "model": model, "choices": [], "usage": usage})


def openai_usage(
    prompt: int, completion: int, cached: int = 0, reasoning: int = 0
) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


ROLE = chunk({"role": "assistant", "content": "", "refusal": None})

TEXT = [
    ROLE,
    chunk({"content": "Hello"}),
    chunk({"content": " there!"}),
    chunk({}, "stop"),
    usage_chunk(openai_usage(19, 3, cached=12)),
    DONE,
]


def _call(index: int, id: str, name: str) -> dict[str, Any]:
    function = {"name": name, "arguments": ""}
    return {"index": index, "id": id, "type": "function", "function": function}


def _args(index: int, arguments: str) -> dict[str, Any]:
    return {"index": index, "function": {"arguments": arguments}}


#: Two parallel calls whose argument fragments interleave (OpenAI's SDKs allow it; vLLM
#: and some others do it).
PARALLEL_TOOLS = [
    chunk(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [_call(0, "call_wx", "get_weather")],
            "refusal": None,
        }
    ),
    chunk({"tool_calls": [_args(0, '{"city"')]}),
    chunk({"tool_calls": [_call(1, "call_tm", "get_time")]}),
    chunk({"tool_calls": [_args(1, '{"zone": "CET"}')]}),
    chunk({"tool_calls": [_args(0, ': "Paris"}')]}),
    chunk({}, "tool_calls"),
    usage_chunk(openai_usage(80, 40)),
    DONE,
]

#: DeepSeek's reasoner: reasoning_content, then content; the usage on the finish chunk.
DEEPSEEK_REASONING = [
    chunk({"role": "assistant", "content": None, "reasoning_content": ""}, model="deepseek-r"),
    chunk({"content": None, "reasoning_content": "The user"}, model="deepseek-r"),
    chunk({"content": None, "reasoning_content": " greets."}, model="deepseek-r"),
    chunk({"content": "Hi", "reasoning_content": None}, model="deepseek-r"),
    chunk(
        {"content": "", "reasoning_content": None},
        "stop",
        usage={
            "prompt_tokens": 10,
            "completion_tokens": 50,
            "total_tokens": 60,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 40},
            "prompt_cache_hit_tokens": 4,
            "prompt_cache_miss_tokens": 6,
        },
        model="deepseek-r",
    ),
    DONE,
]

#: vLLM: `reasoning`, and the stop string that matched as `stop_reason`.
VLLM_STOP_SEQUENCE = [
    chunk({"role": "assistant", "content": ""}, model="qwen3"),
    chunk({"reasoning": "Count."}, model="qwen3"),
    chunk({"content": "1, 2, 3"}, model="qwen3"),
    chunk({"content": ""}, "stop", model="qwen3", stop_reason="END"),
    DONE,
]

REFUSAL = [
    ROLE,
    chunk({"refusal": "I can't help"}),
    chunk({"refusal": " with that."}),
    chunk({}, "stop"),
    DONE,
]

UPSTREAM_ERROR = [
    ROLE,
    chunk({"content": "Hel"}),
    frame(
        {
            "error": {
                "message": "Rate limit reached for gpt-4o",
                "type": "tokens",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
    ),
]


def decode(frames: list[bytes], *, finish: bool = True) -> list[AnswerEvent]:
    """The answer events the codec's stream decoder reads from `frames`, fed one SSE event
    at a time as the relay does (and its `finish()` at the end of the body)."""
    sse = SSEDecoder()
    decoder = CODEC.stream_decoder()
    events: list[AnswerEvent] = []
    for event in [e for f in frames for e in sse.feed(f)]:
        events.extend(decoder.feed(event))
    if finish:
        events.extend(decoder.finish())
    return events


def chunks_of(frames: list[bytes]) -> list[Any]:
    """Each frame's `data` JSON (`[DONE]` as the string), to compare encoder output."""
    out: list[Any] = []
    for event in [e for f in frames for e in SSEDecoder().feed(f)]:
        assert event.data is not None
        out.append("[DONE]" if event.data == "[DONE]" else json.loads(event.data))
    return out
