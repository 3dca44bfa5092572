"""Anthropic Messages' words for what the answer events say: stop reasons, usage, ids, errors,
tool input. Shared by the codec's stream side (`anthropic_messages_stream`) and its whole
answers (`anthropic_messages`), so both read and write them alike.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gateway.apis.anthropic_messages import ANTHROPIC_MESSAGES
from gateway.errors import ErrorCategory, UpstreamErrorEvent, UpstreamRateLimited
from gateway.streaming import StreamError, is_count
from gateway.translation.answer import Failure, Stop, StopReason, Usage

__all__ = [
    "arguments_text",
    "error_frame",
    "failure_of",
    "merged_usage",
    "message_id",
    "stop_of",
    "stop_reason_word",
    "string_of",
    "tool_input",
    "usage_fields",
    "usage_of",
]

#: Anthropic's stop reasons as the answer events say them. `pause_turn` (a server-tool turn
#: paused, to be sent again to go on) only happens with Anthropic's server tools, which a
#: translated request cannot carry: it reads as the end of the turn. `model_context_window_exceeded`
#: is the answer cut by a limit, as `max_tokens` is.
_STOP_REASONS: dict[str, StopReason] = {
    "end_turn": StopReason.END_TURN,
    "max_tokens": StopReason.MAX_TOKENS,
    "tool_use": StopReason.TOOL_USE,
    "stop_sequence": StopReason.STOP_SEQUENCE,
    "refusal": StopReason.REFUSAL,
    "pause_turn": StopReason.END_TURN,
    "model_context_window_exceeded": StopReason.MAX_TOKENS,
}

#: And back: Anthropic has no content filter of its own words; its `refusal` (the model or
#: its classifiers declined to go on) is the nearest.
_STOP_WORDS: dict[StopReason, str] = {
    StopReason.END_TURN: "end_turn",
    StopReason.MAX_TOKENS: "max_tokens",
    StopReason.TOOL_USE: "tool_use",
    StopReason.STOP_SEQUENCE: "stop_sequence",
    StopReason.REFUSAL: "refusal",
    StopReason.CONTENT_FILTER: "refusal",
}

#: Anthropic error types that say "try again later": the gateway's `rate_limit` category.
_RATE_LIMIT_TYPES = frozenset({"overloaded_error", "rate_limit_error"})

_NOT_ID = re.compile(r"[^A-Za-z0-9_]")


def stop_of(reason: object, sequence: object = None) -> Stop | None:
    """The `Stop` of an Anthropic `stop_reason` (None for none; an unknown reason is the end of
    the turn)."""
    if not isinstance(reason, str) or not reason:
        return None
    matched = sequence if isinstance(sequence, str) else None
    return Stop(_STOP_REASONS.get(reason, StopReason.END_TURN), matched)


def stop_reason_word(stop: Stop) -> str:
    return _STOP_WORDS[stop.reason]


def string_of(value: object) -> str:
    """A field that should be a string, or "" when it is not."""
    return value if isinstance(value, str) else ""


def _count(value: object) -> int | None:
    return value if is_count(value) else None


def usage_of(usage: object, earlier: Usage | None = None) -> Usage | None:
    """The `Usage` of an Anthropic usage object: `input` adds the cache reads and writes to
    `input_tokens` (the dialect's sense). Counts it leaves out or nulls (a `message_delta`
    after `message_start`) keep their values from `earlier`."""
    if not isinstance(usage, dict):
        return None
    base = earlier or Usage()
    plain = _count(usage.get("input_tokens"))
    read = _count(usage.get("cache_read_input_tokens"))
    written = _count(usage.get("cache_creation_input_tokens"))
    details = usage.get("output_tokens_details")
    thinking = _count(details.get("thinking_tokens")) if isinstance(details, dict) else None
    cached = read if read is not None else base.cached
    cache_write = written if written is not None else base.cache_write
    if plain is not None:
        total: int | None = plain + (cached or 0) + (cache_write or 0)
    else:
        total = base.input
    output = _count(usage.get("output_tokens"))
    return Usage(
        input=total,
        output=output if output is not None else base.output,
        cached=cached,
        cache_write=cache_write,
        reasoning=thinking if thinking is not None else base.reasoning,
    )


def usage_fields(usage: Usage) -> dict[str, Any]:
    """An Anthropic usage object of `usage`: `input_tokens` without the cache reads and writes,
    which have fields of their own; only what is known, but always `output_tokens` (required)
    and `input_tokens` when the input is known. The thinking tokens are
    `output_tokens_details.thinking_tokens`."""
    fields: dict[str, Any] = {}
    if usage.input is not None:
        fields["input_tokens"] = max(
            0, usage.input - (usage.cached or 0) - (usage.cache_write or 0)
        )
    if usage.cache_write is not None:
        fields["cache_creation_input_tokens"] = usage.cache_write
    if usage.cached is not None:
        fields["cache_read_input_tokens"] = usage.cached
    fields["output_tokens"] = usage.output or 0
    if usage.reasoning is not None:
        fields["output_tokens_details"] = {"thinking_tokens": usage.reasoning}
    return fields


def merged_usage(earlier: Usage | None, later: Usage) -> Usage:
    """`later` with the counts it does not say taken from `earlier`."""
    if earlier is None:
        return later
    return Usage(
        input=later.input if later.input is not None else earlier.input,
        output=later.output if later.output is not None else earlier.output,
        cached=later.cached if later.cached is not None else earlier.cached,
        cache_write=later.cache_write if later.cache_write is not None else earlier.cache_write,
        reasoning=later.reasoning if later.reasoning is not None else earlier.reasoning,
    )


def message_id(upstream_id: str) -> str:
    """A Messages id (`msg_...`) for the answer the upstream named `upstream_id` (kept when it
    is one already; else the upstream's id, its characters an id may hold, after `msg_`)."""
    if upstream_id.startswith("msg_"):
        return upstream_id
    return "msg_" + (_NOT_ID.sub("", upstream_id) or "gateway")


def failure_of(payload: dict[str, Any]) -> Failure:
    """The `Failure` of Anthropic's error event `{"type": "error", "error": {"type", "message"}}`:
    an overload or rate limit is the `rate_limit` category, anything else `api_error`."""
    error = payload.get("error")
    error = error if isinstance(error, dict) else {}
    kind = error.get("type")
    code = kind if isinstance(kind, str) else None
    message = error.get("message")
    return Failure(
        message=message if isinstance(message, str) and message else "the upstream failed",
        code=code,
        category=(ErrorCategory.RATE_LIMIT.value if code in _RATE_LIMIT_TYPES else "api_error"),
    )


def error_frame(failure: Failure) -> bytes:
    """The Anthropic dialect's error event for `failure` (what the gateway writes for its own
    mid-stream errors): an upstream's rate limit or overload is a `rate_limit_error`, any
    other failure an `api_error`."""
    try:
        category = ErrorCategory(failure.category)
    except ValueError:
        category = ErrorCategory.API_ERROR
    code = (
        UpstreamRateLimited.code
        if category is ErrorCategory.RATE_LIMIT
        else UpstreamErrorEvent.code
    )
    error = StreamError(type=category, message=failure.message, code=code)
    return ANTHROPIC_MESSAGES.dialect.error_event(error)


def arguments_text(value: object) -> str:
    """A tool call's `input` as the JSON text of its arguments (compact)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def tool_input(arguments: str) -> dict[str, Any] | None:
    """A tool call's JSON arguments as a `tool_use` block's `input` (empty arguments are `{}`);
    None when they are not a JSON object."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
