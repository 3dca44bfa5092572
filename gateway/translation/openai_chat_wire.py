"""Chat Completions' words for the answer vocabulary, both ways: finish reasons, usage, ids,
the upstream's error object (`gateway.translation.openai_chat` is the codec that uses them).

Finish reasons. OpenAI's `stop` covers both an end of turn and a matched stop sequence, and it
never says which: it reads as `END_TURN` (vLLM's extra `stop_reason` field, the matched string,
makes it `STOP_SEQUENCE`). Written back, `END_TURN` and `STOP_SEQUENCE` are `stop`;
`CONTENT_FILTER` and `REFUSAL` are `content_filter`: a refusal from another API (Anthropic's
`refusal` stop reason: its streaming classifiers halted the answer) is the provider stopping
the answer on policy, which is what OpenAI's `content_filter` says; OpenAI's own refusals
(`message.refusal` with `stop`) have no finish reason of their own.

Usage. `prompt_tokens` counts cached tokens too, as `Usage.input` does; cache writes
(`Usage.cache_write`, Anthropic's) have no place in OpenAI's usage and are left out.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from gateway.errors import ErrorCategory, UpstreamErrorEvent
from gateway.streaming import StreamError
from gateway.translation.answer import Failure, StopReason, Usage

__all__ = [
    "FINISH_REASONS",
    "chat_id",
    "failure_of",
    "finish_reason_of",
    "stream_error_of",
    "usage_json",
    "usage_of",
]

#: OpenAI's finish reasons, read (an unknown one reads as `END_TURN`).
FINISH_REASONS: dict[str, StopReason] = {
    "stop": StopReason.END_TURN,
    "length": StopReason.MAX_TOKENS,
    "tool_calls": StopReason.TOOL_USE,
    "function_call": StopReason.TOOL_USE,
    "content_filter": StopReason.CONTENT_FILTER,
}

_WRITTEN: dict[StopReason, str] = {
    StopReason.END_TURN: "stop",
    StopReason.STOP_SEQUENCE: "stop",
    StopReason.MAX_TOKENS: "length",
    StopReason.TOOL_USE: "tool_calls",
    StopReason.CONTENT_FILTER: "content_filter",
    StopReason.REFUSAL: "content_filter",
}

#: An upstream error's `type` or `code` whose category is not `api_error`.
_ERROR_CATEGORIES: dict[str, ErrorCategory] = {
    "rate_limit_error": ErrorCategory.RATE_LIMIT,
    "rate_limit_exceeded": ErrorCategory.RATE_LIMIT,
    "tokens": ErrorCategory.RATE_LIMIT,
    "requests": ErrorCategory.RATE_LIMIT,
    "timeout_error": ErrorCategory.TIMEOUT,
    "timeout": ErrorCategory.TIMEOUT,
}

_CATEGORY_NAMES = frozenset(category.value for category in ErrorCategory)


def finish_reason_of(reason: StopReason) -> str:
    """OpenAI's finish reason for `reason` (see the module docstring)."""
    return _WRITTEN[reason]


def chat_id(answer_id: str) -> str:
    """A `chatcmpl-...` id for an answer the upstream called `answer_id` (kept when it is
    one already; a fresh one when the upstream gave none)."""
    if answer_id.startswith("chatcmpl-"):
        return answer_id
    return "chatcmpl-" + (answer_id or uuid.uuid4().hex)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage_of(usage: Mapping[str, Any]) -> Usage:
    """OpenAI's `usage` object as a `Usage` (what it does not say is None)."""
    prompt = usage.get("prompt_tokens_details")
    completion = usage.get("completion_tokens_details")
    return Usage(
        input=_count(usage.get("prompt_tokens")),
        output=_count(usage.get("completion_tokens")),
        cached=_count(prompt.get("cached_tokens")) if isinstance(prompt, Mapping) else None,
        reasoning=(
            _count(completion.get("reasoning_tokens")) if isinstance(completion, Mapping) else None
        ),
    )


def usage_json(usage: Usage) -> dict[str, Any]:
    """`usage` in OpenAI's shape. Its counts are integers in OpenAI's schema (the SDK's
    `CompletionUsage`): a count the upstream did not report is written as 0."""
    prompt = usage.input or 0
    completion = usage.output or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": usage.cached or 0},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning or 0},
    }


def failure_of(body: Mapping[str, Any]) -> Failure:
    """The `Failure` an OpenAI error object (`{"error": {...}}`, the gateway's own error
    event's top-level `type` beside it) says. The category comes from the gateway's own
    `type` when the upstream is a gateway, else from the error's `type` or `code` by table,
    else `api_error`."""
    error = body.get("error")
    fields: Mapping[str, Any] = error if isinstance(error, Mapping) else {}
    message = fields.get("message")
    if not isinstance(message, str) or not message:
        message = error if isinstance(error, str) and error else "the upstream failed"
    code = fields.get("code")
    kind = fields.get("type")
    own = body.get("type")
    category = ErrorCategory.API_ERROR
    if isinstance(own, str) and own in _CATEGORY_NAMES:
        category = ErrorCategory(own)
    else:
        for word in (kind, code):
            if isinstance(word, str) and word in _ERROR_CATEGORIES:
                category = _ERROR_CATEGORIES[word]
                break
    named = code if isinstance(code, str) and code else kind
    return Failure(
        message=message,
        code=named if isinstance(named, str) and named else None,
        category=category.value,
    )


def stream_error_of(failure: Failure) -> StreamError:
    """The `StreamError` the gateway writes for an upstream's `failure`: its category (an
    unknown one is `api_error`), message, and its code shown as the provider's."""
    try:
        category = ErrorCategory(failure.category)
    except ValueError:
        category = ErrorCategory.API_ERROR
    return StreamError(
        type=category,
        message=failure.message,
        code=UpstreamErrorEvent.code,
        provider_code=failure.code,
    )
