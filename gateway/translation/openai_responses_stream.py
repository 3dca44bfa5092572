"""Answer events written as a Responses stream (`ResponsesStream`), and folded into the whole
response object of a non-streaming answer (`ResponsesStream.response`).

The frames are OpenAI's, numbered by `sequence_number` from 0: `Start` is `response.created`
and `response.in_progress` (the response object, `status: in_progress`, `output: []`, echoing
the request); each content part is an output item, numbered by `output_index` in the order the
parts began:

- text: a `message` item with one `output_text` part (`response.output_item.added`,
  `response.content_part.added`, a `response.output_text.delta` per delta; at its end
  `response.output_text.done`, `response.content_part.done`, `response.output_item.done`);
- a tool call: a `function_call` item (`call_id` the call's id, a
  `response.function_call_arguments.delta` per fragment; at its end
  `response.function_call_arguments.done` with the whole arguments and the item's `.done`);
- reasoning: a `reasoning` item with one summary part (`response.reasoning_summary_part.added`,
  `response.reasoning_summary_text.delta`...; an Anthropic thinking signature becomes the item's
  `encrypted_content`).

A text or reasoning item ends when another part begins (a later delta of the same part opens a
new item: nothing is lost). Tool calls stay open until the answer stops, so that the argument
fragments of parallel calls may interleave (openai-python's accumulator and the Vercel AI SDK
key every delta by `output_index`). `End` closes what is open and writes the terminal event:
`response.completed`, or `response.incomplete` with `incomplete_details.reason`
(`max_output_tokens`, `content_filter`) for an answer cut by either; its response holds every
output item as finished and the usage. A `Failure` is the Responses dialect's own error event,
numbered after the last event written, as the gateway writes its own mid-stream errors.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from gateway.apis import OPENAI_RESPONSES
from gateway.apis.openai_responses import ResponsesTracker
from gateway.errors import ErrorCategory
from gateway.streaming import SSEEvent, StreamError, compact_json
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
from gateway.translation.conversation import Conversation
from gateway.translation.frames import json_string, named_event, read_frame
from gateway.translation.openai_responses_target import (
    text_config,
    tool_choice_field,
    tools_field,
)

__all__ = ["ResponsesStream"]

#: Stop reasons a Responses answer reports as `incomplete`, with the reason it gives.
INCOMPLETE = {
    StopReason.MAX_TOKENS: "max_output_tokens",
    StopReason.CONTENT_FILTER: "content_filter",
}
_NOT_ID = re.compile(r"[^A-Za-z0-9]")
_TEXT_DELTA = (
    b'{"type":"response.output_text.delta","sequence_number":%d,"item_id":%b,'
    b'"output_index":%d,"content_index":0,"delta":%b,"logprobs":[]}'
)


class _Item:
    """One output item as it is built: its kind, place, ids and what it said so far."""

    __slots__ = ("call_id", "encrypted", "id", "index", "kind", "name", "status", "texts")

    def __init__(self, kind: str, index: int, identity: str) -> None:
        self.kind = kind  # message, function_call or reasoning
        self.index = index  # output_index
        self.id = identity
        self.texts: list[str] = []  # text, arguments or summary text
        self.call_id = ""
        self.name = ""
        self.encrypted: str | None = None
        self.status = "in_progress"

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def where(self) -> dict[str, Any]:
        if self.kind == "function_call":
            return {"item_id": self.id, "output_index": self.index}
        if self.kind == "reasoning":
            return {"item_id": self.id, "output_index": self.index, "summary_index": 0}
        return {"item_id": self.id, "output_index": self.index, "content_index": 0}

    def value(self) -> dict[str, Any]:
        """The item as a response object lists it (as `.added` says it while in progress)."""
        done = self.status != "in_progress"
        if self.kind == "function_call":
            return {
                "id": self.id,
                "type": "function_call",
                "status": self.status,
                "arguments": self.text if done else "",
                "call_id": self.call_id,
                "name": self.name,
            }
        if self.kind == "reasoning":
            summary = [{"type": "summary_text", "text": self.text}] if done and self.texts else []
            item: dict[str, Any] = {"id": self.id, "type": "reasoning", "summary": summary}
            if done and self.encrypted is not None:
                item["encrypted_content"] = self.encrypted
            return item
        content = [_output_text(self.text)] if done else []
        return {
            "id": self.id,
            "type": "message",
            "status": self.status,
            "role": "assistant",
            "content": content,
        }


class ResponsesStream:
    """One Responses answer, written event by event (`events`) and whole (`response`)."""

    def __init__(self, conversation: Conversation) -> None:
        self._conversation = conversation
        self._sequence = 0
        self._id = ""
        self._created = 0
        self._items: list[_Item] = []
        self._open: dict[tuple[str, int], _Item] = {}  # by (kind, part) or ("call", index)
        self._usage: Usage | None = None
        self._stop: Stop | None = None
        self._failure: Failure | None = None
        self._over = False

    def events(self, event: AnswerEvent) -> list[SSEEvent]:
        if self._over:
            return []
        out: list[SSEEvent] = []
        if not self._id and not isinstance(event, Start):
            out += self._start(Start(id="", model=self._conversation.model))
        if isinstance(event, Start):
            out += self._start(event) if not self._id else []
        elif isinstance(event, TextDelta):
            out += self._text(event)
        elif isinstance(event, ReasoningDelta):
            out += self._reasoning(event)
        elif isinstance(event, ToolCallStart):
            out += self._call_start(event)
        elif isinstance(event, ToolCallDelta):
            out += self._call_delta(event)
        elif isinstance(event, Usage):
            self._usage = event
        elif isinstance(event, Stop):
            self._stop = self._stop or event
            out += self._close(lambda item: True)
        elif isinstance(event, End):
            out += self._close(lambda item: True)
            out.append(self._terminal())
        else:
            out += self._error(event)
        return out

    def response(self) -> dict[str, Any]:
        """The response object as it stands (the whole answer, once `End` was encoded)."""
        if self._failure is not None:
            error = {"code": self._failure.code or "server_error", "message": self._failure.message}
            return self._response("failed", error=error)
        if not self._over:
            return self._response("in_progress")
        reason = INCOMPLETE.get(self._stop.reason) if self._stop is not None else None
        return self._response("completed" if reason is None else "incomplete", reason=reason)

    def _start(self, start: Start) -> list[SSEEvent]:
        suffix = _NOT_ID.sub("", start.id.removeprefix("resp_")) or f"{time.time_ns():x}"
        self._id = f"resp_{suffix}"
        self._created = start.created if start.created is not None else int(time.time())
        snapshot = self._response("in_progress")
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def _text(self, delta: TextDelta) -> list[SSEEvent]:
        if not delta.text:
            return []
        out, item = self._item("message", delta.part)
        if not item.texts:
            part = _output_text("")
            out.append(self._event("response.content_part.added", **item.where(), part=part))
        item.texts.append(delta.text)
        out.append(self._text_delta(item, delta.text))
        return out

    def _text_delta(self, item: _Item, text: str) -> SSEEvent:
        """`response.output_text.delta`, written as `_event` writes it without the dump of a
        whole object: most of a stream."""
        payload = _TEXT_DELTA % (
            self._sequence,
            json_string(item.id),
            item.index,
            json_string(text),
        )
        self._sequence += 1
        return named_event("response.output_text.delta", payload)

    def _reasoning(self, delta: ReasoningDelta) -> list[SSEEvent]:
        if not delta.text and delta.signature is None:
            return []
        out, item = self._item("reasoning", delta.part)
        if delta.signature is not None:
            item.encrypted = delta.signature
        if delta.text:
            if not item.texts:
                part = {"type": "summary_text", "text": ""}
                out.append(
                    self._event("response.reasoning_summary_part.added", **item.where(), part=part)
                )
            item.texts.append(delta.text)
            out.append(
                self._event(
                    "response.reasoning_summary_text.delta", **item.where(), delta=delta.text
                )
            )
        return out

    def _call_start(self, start: ToolCallStart) -> list[SSEEvent]:
        out = self._close(lambda item: item.kind != "function_call")
        item = self._add("function_call", ("call", start.index))
        item.call_id, item.name = start.id, start.name
        out.append(self._added(item))
        return out

    def _call_delta(self, delta: ToolCallDelta) -> list[SSEEvent]:
        item = self._open.get(("call", delta.index))
        if item is None or not delta.arguments:
            return []  # a fragment of a call that never started: nothing to write it in
        item.texts.append(delta.arguments)
        return [
            self._event(
                "response.function_call_arguments.delta", **item.where(), delta=delta.arguments
            )
        ]

    def _item(self, kind: str, part: int) -> tuple[list[SSEEvent], _Item]:
        """The open item of `kind` for `part`, opening it (and closing others) if need be."""
        item = self._open.get((kind, part))
        if item is not None:
            return [], item
        out = self._close(lambda other: other.kind != "function_call")
        item = self._add(kind, (kind, part))
        out.append(self._added(item))
        return out, item

    def _add(self, kind: str, key: tuple[str, int]) -> _Item:
        index = len(self._items)
        prefix = {"message": "msg", "function_call": "fc", "reasoning": "rs"}[kind]
        item = _Item(kind, index, f"{prefix}_{self._id.removeprefix('resp_')}_{index}")
        self._items.append(item)
        self._open[key] = item
        return item

    def _added(self, item: _Item) -> SSEEvent:
        return self._event("response.output_item.added", output_index=item.index, item=item.value())

    def _close(self, which: Callable[[_Item], bool]) -> list[SSEEvent]:
        """End the open items `which` accepts, in output order."""
        out: list[SSEEvent] = []
        for key, item in sorted(self._open.items(), key=lambda entry: entry[1].index):
            if which(item):
                del self._open[key]
                out += self._done(item)
        return out

    def _done(self, item: _Item) -> list[SSEEvent]:
        cut = self._stop is not None and self._stop.reason in INCOMPLETE
        item.status = "incomplete" if cut else "completed"
        where = item.where()
        out: list[SSEEvent] = []
        if item.kind == "message" and item.texts:
            part = _output_text(item.text)
            out.append(
                self._event("response.output_text.done", **where, text=item.text, logprobs=[])
            )
            out.append(self._event("response.content_part.done", **where, part=part))
        elif item.kind == "reasoning" and item.texts:
            part = {"type": "summary_text", "text": item.text}
            out.append(self._event("response.reasoning_summary_text.done", **where, text=item.text))
            out.append(self._event("response.reasoning_summary_part.done", **where, part=part))
        elif item.kind == "function_call":
            out.append(
                self._event("response.function_call_arguments.done", **where, arguments=item.text)
            )
        out.append(
            self._event("response.output_item.done", output_index=item.index, item=item.value())
        )
        return out

    def _terminal(self) -> SSEEvent:
        self._over = True
        response = self.response()
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        return self._event(kind, response=response)

    def _error(self, failure: Failure) -> list[SSEEvent]:
        self._over = True
        self._failure = failure
        try:
            category = ErrorCategory(failure.category)
        except ValueError:
            category = ErrorCategory.API_ERROR
        error = StreamError(
            type=category,
            message=failure.message,
            code="upstream_error_event",
            provider_code=failure.code,
        )
        tracker = ResponsesTracker()
        tracker.sequence_number = self._sequence - 1
        self._sequence += 1
        return read_frame(OPENAI_RESPONSES.dialect.error_event(error, tracker))

    def _event(self, kind: str, **fields: Any) -> SSEEvent:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return named_event(kind, compact_json(payload))

    def _response(
        self, status: str, *, reason: str | None = None, error: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        conversation = self._conversation
        final = status != "in_progress"
        response: dict[str, Any] = {
            "id": self._id,
            "object": "response",
            "created_at": self._created,
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": None if reason is None else {"reason": reason},
            "instructions": conversation.system,
            "max_output_tokens": conversation.max_tokens,
            "model": conversation.model,
            "output": [item.value() for item in self._items] if final else [],
            "parallel_tool_calls": conversation.parallel_tool_calls is not False,
            "previous_response_id": None,
            "reasoning": {"effort": conversation.reasoning_effort, "summary": None},
            "store": False,
            "temperature": 1.0 if conversation.temperature is None else conversation.temperature,
            "text": text_config(conversation.response_format),
            "tool_choice": (
                "auto"
                if conversation.tool_choice is None
                else tool_choice_field(conversation.tool_choice)
            ),
            "tools": tools_field(conversation.tools),
            "top_p": 1.0 if conversation.top_p is None else conversation.top_p,
            "truncation": "disabled",
            "usage": _usage(self._usage) if final and self._usage is not None else None,
            "user": conversation.user,
            "metadata": {},
        }
        if status == "completed":
            response["completed_at"] = int(time.time())
        return response


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _usage(usage: Usage) -> dict[str, Any]:
    prompt = usage.input or 0
    output = usage.output or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": usage.cached or 0,
            "cache_write_tokens": usage.cache_write or 0,
        },
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning or 0},
        "total_tokens": prompt + output,
    }
