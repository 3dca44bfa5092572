"""A Responses upstream's answer read as answer events: its stream (`ResponsesReader`, event by
event) and its whole response object (`decode_response`).

Each output item is one part (`part` = its `output_index`): `response.output_text.delta` and
`response.refusal.delta` are `TextDelta`s; a `function_call` item's `response.output_item.added`
is a `ToolCallStart` (`index` counting the answer's function calls, `id` its `call_id`) and its
`response.function_call_arguments.delta`s are `ToolCallDelta`s (an upstream that sends the
arguments only whole, in `.done` or the item's `.done`, gives one delta then);
`response.reasoning_summary_text.delta` and `response.reasoning_text.delta` are
`ReasoningDelta`s (a second summary of one item is set off by a blank line).

The terminal events: `response.completed` is `Usage`, `Stop` (`TOOL_USE` when the answer has
function calls, `REFUSAL` when it refused and said nothing else, else `END_TURN`) and `End`;
`response.incomplete` is `Usage`, `Stop` (`CONTENT_FILTER` for `incomplete_details.reason`
`content_filter`, else `MAX_TOKENS`: cut short) and `End`; `response.failed` and `error` are a
`Failure`. A stream without a terminal event was cut (`finish` says nothing). Events the reader
cannot read (not JSON, unknown types, deltas of items never announced) are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.streaming import SSEEvent, loads_object
from gateway.translation.answer import (
    AnswerEvent,
    End,
    Failure,
    ReasoningDelta,
    Start,
    Stop,
    StopReason,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)

__all__ = ["ResponsesReader", "decode_response"]

#: Upstream error codes in the gateway's categories (the rest are `api_error`).
_CATEGORIES = {"rate_limit_exceeded": "rate_limit"}


class ResponsesReader:
    """One Responses upstream stream, read event by event (a `StreamDecoder`)."""

    def __init__(self) -> None:
        self._started = False
        self._over = False
        self._calls: dict[int, int] = {}  # output_index -> tool call index
        self._streamed: set[int] = set()  # output indices whose content was streamed
        self._summaries: dict[int, int] = {}  # output_index -> the summary being streamed
        self._spoke = False  # text other than a refusal
        self._refused = False

    def feed(self, event: SSEEvent) -> list[AnswerEvent]:
        if self._over or event.data is None:
            return []
        payload = loads_object(event.data)
        if payload is None:
            return []
        kind = event.event or payload.get("type")
        if kind == "response.created":
            return self._start(payload.get("response"))
        if kind in ("response.completed", "response.incomplete"):
            return self._terminal(payload.get("response"))
        if kind in ("response.failed", "error"):
            self._over = True
            return [_failure(payload)]
        index = payload.get("output_index")
        if not isinstance(index, int) or isinstance(index, bool):
            return []
        return self._item_event(str(kind), index, payload)

    def finish(self) -> list[AnswerEvent]:
        return []

    def _start(self, response: object) -> list[AnswerEvent]:
        if self._started or not isinstance(response, dict):
            return []
        self._started = True
        created = response.get("created_at")
        return [
            Start(
                id=str(response.get("id", "")),
                model=str(response.get("model", "")),
                created=int(created) if isinstance(created, int | float) else None,
            )
        ]

    def _item_event(self, kind: str, index: int, payload: Mapping[str, Any]) -> list[AnswerEvent]:
        delta = payload.get("delta")
        if kind in ("response.output_text.delta", "response.refusal.delta"):
            if not isinstance(delta, str):
                return []
            self._streamed.add(index)
            if kind == "response.refusal.delta":
                self._refused = True
            else:
                self._spoke = True
            return [TextDelta(delta, part=index)]
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            return self._reasoning(index, payload) if isinstance(delta, str) else []
        if kind == "response.function_call_arguments.delta":
            call = self._calls.get(index)
            if call is None or not isinstance(delta, str):
                return []
            self._streamed.add(index)
            return [ToolCallDelta(call, delta, part=index)]
        item = payload.get("item")
        if kind == "response.output_item.added" and isinstance(item, dict):
            return self._added(index, item)
        if kind == "response.function_call_arguments.done":
            return self._whole_arguments(index, payload.get("arguments"))
        if kind == "response.output_item.done" and isinstance(item, dict):
            return self._item_done(index, item)
        return []

    def _reasoning(self, index: int, payload: Mapping[str, Any]) -> list[AnswerEvent]:
        text: str = payload["delta"]
        summary = payload.get("summary_index")
        if isinstance(summary, int) and self._summaries.setdefault(index, summary) != summary:
            self._summaries[index] = summary
            text = "\n\n" + text
        self._streamed.add(index)
        return [ReasoningDelta(text, part=index)]

    def _added(self, index: int, item: Mapping[str, Any]) -> list[AnswerEvent]:
        if item.get("type") != "function_call" or index in self._calls:
            return []
        call = self._calls[index] = len(self._calls)
        events: list[AnswerEvent] = [
            ToolCallStart(call, str(item.get("call_id", "")), str(item.get("name", "")), part=index)
        ]
        arguments = item.get("arguments")
        if isinstance(arguments, str) and arguments:
            self._streamed.add(index)
            events.append(ToolCallDelta(call, arguments, part=index))
        return events

    def _whole_arguments(self, index: int, arguments: object) -> list[AnswerEvent]:
        call = self._calls.get(index)
        if call is None or index in self._streamed or not isinstance(arguments, str):
            return []
        self._streamed.add(index)
        return [ToolCallDelta(call, arguments, part=index)] if arguments else []

    def _item_done(self, index: int, item: Mapping[str, Any]) -> list[AnswerEvent]:
        """What an item's `.done` holds that its deltas did not say (an upstream that sends
        items whole)."""
        if index in self._streamed:
            return []
        if item.get("type") == "function_call" and index not in self._calls:
            return self._added(index, item)
        if item.get("type") == "function_call":
            return self._whole_arguments(index, item.get("arguments"))
        events = _item_events(index, item, len(self._calls))
        self._streamed.add(index)
        self._spoke = self._spoke or any(isinstance(event, TextDelta) for event in events)
        return events

    def _terminal(self, response: object) -> list[AnswerEvent]:
        self._over = True
        if not isinstance(response, dict):
            return [Stop(StopReason.END_TURN), End()]
        events: list[AnswerEvent] = []
        usage = _usage(response.get("usage"))
        if usage is not None:
            events.append(usage)
        calls = bool(self._calls) or _has_calls(response)
        events.append(Stop(_stop_reason(response, calls, self._refused and not self._spoke)))
        events.append(End())
        return events


def decode_response(response: Mapping[str, Any]) -> list[AnswerEvent]:
    """A whole Responses response object as the events its stream would have had."""
    created = response.get("created_at")
    events: list[AnswerEvent] = [
        Start(
            id=str(response.get("id", "")),
            model=str(response.get("model", "")),
            created=int(created) if isinstance(created, int | float) else None,
        )
    ]
    if response.get("status") == "failed":
        error = response.get("error")
        return [*events, _failure({"error": error if isinstance(error, dict) else {}})]
    calls = 0
    output = response.get("output")
    for index, item in enumerate(output if isinstance(output, list) else []):
        if isinstance(item, dict):
            found = _item_events(index, item, calls)
            calls += sum(isinstance(event, ToolCallStart) for event in found)
            events += found
    usage = _usage(response.get("usage"))
    if usage is not None:
        events.append(usage)
    refused = _only_refused(output)
    events += [Stop(_stop_reason(response, calls > 0, refused)), End()]
    return events


def _item_events(index: int, item: Mapping[str, Any], calls: int) -> list[AnswerEvent]:
    """One whole output item's events (its `part` is `index`; a call is the `calls`-th)."""
    kind = item.get("type")
    if kind == "function_call":
        start = ToolCallStart(calls, str(item.get("call_id", "")), str(item.get("name", "")), index)
        arguments = item.get("arguments")
        if isinstance(arguments, str) and arguments:
            return [start, ToolCallDelta(calls, arguments, part=index)]
        return [start]
    if kind == "message":
        texts = [_content_text(part) for part in item.get("content") or []]
        text = "".join(texts)
        return [TextDelta(text, part=index)] if text else []
    if kind == "reasoning":
        entries = item.get("summary") or item.get("content") or []
        texts = [entry["text"] for entry in entries if isinstance(entry, dict) and "text" in entry]
        text = "\n\n".join(entry for entry in texts if isinstance(entry, str))
        return [ReasoningDelta(text, part=index)] if text else []
    return []


def _content_text(part: object) -> str:
    if not isinstance(part, dict):
        return ""
    value = part.get("text") if part.get("type") == "output_text" else part.get("refusal")
    return value if isinstance(value, str) else ""


def _only_refused(output: object) -> bool:
    """Whether the output's messages hold refusals and no text."""
    kinds = {
        part.get("type")
        for item in (output if isinstance(output, list) else [])
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or []
        if isinstance(part, dict)
    }
    return "refusal" in kinds and "output_text" not in kinds


def _has_calls(response: Mapping[str, Any]) -> bool:
    output = response.get("output")
    return any(
        isinstance(item, dict) and item.get("type") == "function_call"
        for item in (output if isinstance(output, list) else [])
    )


def _stop_reason(response: Mapping[str, Any], calls: bool, refused: bool) -> StopReason:
    if response.get("status") == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return StopReason.CONTENT_FILTER if reason == "content_filter" else StopReason.MAX_TOKENS
    if calls:
        return StopReason.TOOL_USE
    return StopReason.REFUSAL if refused else StopReason.END_TURN


def _usage(usage: object) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    inputs = usage.get("input_tokens_details")
    outputs = usage.get("output_tokens_details")
    inputs = inputs if isinstance(inputs, dict) else {}
    outputs = outputs if isinstance(outputs, dict) else {}
    return Usage(
        input=_count(usage.get("input_tokens")),
        output=_count(usage.get("output_tokens")),
        cached=_count(inputs.get("cached_tokens")),
        cache_write=_count(inputs.get("cache_write_tokens")),
        reasoning=_count(outputs.get("reasoning_tokens")),
    )


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _failure(payload: Mapping[str, Any]) -> Failure:
    """`error` (`{"code", "message"}`, or nested in `error`) or `response.failed` (the
    response's `error`) as a `Failure`."""
    response = payload.get("response")
    error = response.get("error") if isinstance(response, dict) else payload.get("error")
    source = error if isinstance(error, dict) else payload
    message = source.get("message")
    code = source.get("code")
    code = code if isinstance(code, str) else None
    return Failure(
        message=message if isinstance(message, str) else "the upstream failed",
        code=code,
        category=_CATEGORIES.get(code or "", "api_error"),
    )
