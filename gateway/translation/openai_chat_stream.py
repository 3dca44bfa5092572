"""Chat Completions streams read into answer events and written from them.

Reading (`ChatStreamDecoder`): the first chunk starts the answer (its `id`, `model`,
`created`); choice 0's `delta` says the rest - `reasoning_content` (DeepSeek, vLLM) or
`reasoning` (vLLM's newer name, OpenRouter) as reasoning, `content` and `refusal` as text,
`tool_calls[]` fragments as tool calls. Parts are numbered in the order they start: a run of
reasoning or of text is one part (a change of kind starts the next), and each tool call is one
part, whatever its fragments interleave with. Tool calls are numbered in the order they start:
a fragment's `index` names its call (a server that sends every call at index 0 is told apart
by a new `id`; one without `index` at all by its `id`), and a call without an `id` gets one of
OpenAI's shape, so a client can answer it.

The `finish_reason` becomes the `Stop`, held until the stream ends: OpenAI sends the usage
chunk (`"choices": []`) after the finish chunk, and answer events put `Usage` before `Stop`.
An answer that called tools but says `stop` (servers that do) stops for `TOOL_USE`; one that
was a refusal (`delta.refusal`) and says `stop` stops for `REFUSAL`. `[DONE]` ends it (with
`END_TURN`, or `TOOL_USE` after tool calls, when no `finish_reason` came: `[DONE]` says the
answer is complete); a chunk with an `error` is the upstream's `Failure`. Other choices than
0 (`n` > 1 is never asked of a translated call) and what cannot be read are skipped.

Writing (`ChatStreamEncoder`): the chunks OpenAI sends, one per event, at once: the role chunk
at `Start`, a `content` delta per text delta, a `tool_calls` delta per tool call start (its id,
name, empty arguments) and per argument fragment, the finish chunk at `Stop`. Reasoning is
written as `delta.reasoning_content`: OpenAI's chat API streams no reasoning of its own, and
this is the convention of DeepSeek and vLLM, which the OpenAI-compatible clients read; the
`openai` SDK keeps fields it does not know (its models allow extras), so nothing breaks. The
usage is held and written at `End`, as OpenAI's usage chunk (`"choices": []`) before
`data: [DONE]`, whether or not the client asked (`stream_options.include_usage`): the relay
drops that chunk for a client that did not (`Verdict.DROP`, `gateway.apis.openai_chat.dialect`)
and counts its tokens. A `Failure` is the OpenAI dialect's error event, the frame the gateway
writes for its own mid-stream errors, and the stream ends there.
"""

from __future__ import annotations

import re
import time
from typing import Any

from gateway.apis import OPENAI_CHAT
from gateway.streaming import SSEEvent, compact_json, loads_object
from gateway.translation.answer import (
    AnswerEvent,
    End,
    ReasoningDelta,
    Start,
    Stop,
    StopReason,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from gateway.translation.codec import StreamEncoder
from gateway.translation.conversation import Conversation
from gateway.translation.frames import data_event, json_string, read_frame
from gateway.translation.openai_chat_wire import (
    FINISH_REASONS,
    chat_id,
    failure_of,
    finish_reason_of,
    stream_error_of,
    usage_json,
    usage_of,
)

__all__ = ["DONE", "ChatStreamDecoder", "ChatStreamEncoder", "stop_of"]

DONE = b"data: [DONE]\n\n"
DONE_EVENT = SSEEvent(DONE, "[DONE]")

#: A chunk's frame from its head to its delta, and a text chunk's from its text to its end.
_CHOICE = b',"choices":[{"index":0,"delta":'
_CONTENT_END = b'},"logprobs":null,"finish_reason":null}]}\n\n'

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def stop_of(finish_reason: str, choice: dict[str, Any], *, tool_calls: bool, refused: bool) -> Stop:
    """The `Stop` a choice's `finish_reason` says (see the module docstring)."""
    matched = choice.get("stop_reason")  # vLLM: the stop string that matched, if one did
    if finish_reason == "stop" and isinstance(matched, str) and matched:
        return Stop(StopReason.STOP_SEQUENCE, stop_sequence=matched)
    reason = FINISH_REASONS.get(finish_reason, StopReason.END_TURN)
    if reason is StopReason.END_TURN and tool_calls:
        reason = StopReason.TOOL_USE
    elif reason is StopReason.END_TURN and refused:
        reason = StopReason.REFUSAL
    return Stop(reason)


class ChatStreamDecoder:
    """One Chat Completions stream read into answer events (module docstring)."""

    __slots__ = (
        "_by_index",
        "_call_ids",
        "_done",
        "_id",
        "_kind",
        "_last_call",
        "_next_part",
        "_part",
        "_refused",
        "_started",
        "_stop",
        "_tool_parts",
        "_usage",
    )

    def __init__(self) -> None:
        self._started = False
        self._done = False
        self._id = ""
        self._kind: str | None = None  # the kind of the text/reasoning run now open
        self._part = -1  # that run's part
        self._next_part = 0
        self._by_index: dict[object, int] = {}  # the upstream's key of a call -> our index
        self._call_ids: list[str] = []  # our index -> the call's id
        self._tool_parts: list[int] = []  # our index -> its part
        self._last_call: int | None = None
        self._refused = False
        self._stop: Stop | None = None
        self._usage: Usage | None = None

    def feed(self, event: SSEEvent) -> list[AnswerEvent]:
        data = event.data
        if self._done or data is None:
            return []
        if data.startswith("[DONE]"):
            return self.end()
        chunk = loads_object(data)
        return [] if chunk is None else self.read_chunk(chunk)

    def read_chunk(self, chunk: dict[str, Any]) -> list[AnswerEvent]:
        """The events one parsed chunk says (`feed` without the SSE framing; a whole answer
        is read as one chunk)."""
        if self._done:
            return []
        if chunk.get("error"):
            self._done = True
            return [failure_of(chunk)]
        out: list[AnswerEvent] = []
        if not self._started:
            self._started = True
            self._id = chunk["id"] if isinstance(chunk.get("id"), str) else ""
            model = chunk.get("model")
            created = chunk.get("created")
            out.append(
                Start(
                    id=self._id,
                    model=model if isinstance(model, str) else "",
                    created=created if isinstance(created, int) else None,
                )
            )
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and choice.get("index", 0) == 0:
                    self._read_choice(choice, out)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            read = usage_of(usage)
            if read != self._usage:  # servers that report it on every chunk (vLLM)
                self._usage = read
                out.append(read)
        return out

    def finish(self) -> list[AnswerEvent]:
        if self._done or self._stop is None:
            return []  # ended already, or cut before its finish_reason
        return self.end()

    def end(self) -> list[AnswerEvent]:
        """The answer is complete (`[DONE]`): its `Stop` and `End`."""
        if self._done:
            return []
        self._done = True
        stop = self._stop
        if stop is None and self._started:
            stop = Stop(StopReason.TOOL_USE if self._call_ids else StopReason.END_TURN)
        return [End()] if stop is None else [stop, End()]

    def _read_choice(self, choice: dict[str, Any], out: list[AnswerEvent]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            reasoning = delta.get("reasoning_content")
            if not (isinstance(reasoning, str) and reasoning):
                reasoning = delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                out.append(ReasoningDelta(reasoning, part=self._run("reasoning")))
            content = delta.get("content")
            if isinstance(content, str) and content:
                out.append(TextDelta(content, part=self._run("text")))
            refusal = delta.get("refusal")
            if isinstance(refusal, str) and refusal:
                self._refused = True
                out.append(TextDelta(refusal, part=self._run("refusal")))
            tool_calls = delta.get("tool_calls")
            if isinstance(tool_calls, list):
                for fragment in tool_calls:
                    if isinstance(fragment, dict):
                        self._read_tool_call(fragment, out)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            self._stop = stop_of(
                finish, choice, tool_calls=bool(self._call_ids), refused=self._refused
            )

    def _run(self, kind: str) -> int:
        """The part of a text or reasoning delta of `kind`: the open run's, or a new one."""
        if self._kind != kind:
            self._kind = kind
            self._part = self._next_part
            self._next_part += 1
        return self._part

    def _read_tool_call(self, fragment: dict[str, Any], out: list[AnswerEvent]) -> None:
        raw_index = fragment.get("index")
        call_id = fragment.get("id")
        call_id = call_id if isinstance(call_id, str) and call_id else None
        key: object = raw_index if isinstance(raw_index, int) else ("id", call_id)
        index = self._by_index.get(key)
        if call_id is None and not isinstance(raw_index, int):
            index = self._last_call  # neither index nor id: the call being written
        elif index is not None and call_id is not None and call_id != self._call_ids[index]:
            index = None  # a new call at an index already used
        function = fragment.get("function")
        function = function if isinstance(function, dict) else {}
        if index is None:
            index = len(self._call_ids)
            self._by_index[key] = index
            name = function.get("name")
            part = self._next_part
            self._next_part += 1
            self._kind = None
            call_id = call_id or f"call_{index}_{_UNSAFE_ID.sub('', self._id)}"
            self._call_ids.append(call_id)
            self._tool_parts.append(part)
            out.append(
                ToolCallStart(index, call_id, name if isinstance(name, str) else "", part=part)
            )
        self._last_call = index
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            self._kind = None
            out.append(ToolCallDelta(index, arguments, part=self._tool_parts[index]))


class ChatStreamEncoder(StreamEncoder):
    """One Chat Completions client stream written from answer events (module docstring).

    The chunks' common head (`id`, `object`, `created`, the client's `model`) is made once at
    `Start`, and with it the whole frame of a text chunk but its text: a text delta costs the
    dump of its one string."""

    __slots__ = ("_closed", "_content", "_head", "_model", "_usage")

    def __init__(self, conversation: Conversation) -> None:
        self._model = conversation.model
        self._head: bytes | None = None
        self._content = b""  # a text chunk's frame up to its text (with `_head`)
        self._usage: Usage | None = None
        self._closed = False

    def events(self, event: AnswerEvent) -> list[SSEEvent]:
        if self._closed:
            return []
        if isinstance(event, TextDelta):
            if not event.text:
                return []
            if self._head is None:
                self._started_head()  # makes `_content` too
            return [data_event(self._content + json_string(event.text) + _CONTENT_END)]
        if isinstance(event, ToolCallDelta):
            delta = b'{"tool_calls":[{"index":%d,"function":{"arguments":%b}}]}' % (
                event.index,
                json_string(event.arguments),
            )
            return [self._chunk(delta)]
        if isinstance(event, ReasoningDelta):
            if not event.text:
                return []  # a signature alone: Anthropic's, nothing OpenAI can carry
            return [self._chunk(b'{"reasoning_content":' + json_string(event.text) + b"}")]
        if isinstance(event, ToolCallStart):
            call = {
                "index": event.index,
                "id": event.id,
                "type": "function",
                "function": {"name": event.name, "arguments": ""},
            }
            return [self._chunk(compact_json({"tool_calls": [call]}))]
        if isinstance(event, Start):
            self._start(event)
            return [self._chunk(b'{"role":"assistant","content":""}')]
        if isinstance(event, Usage):
            self._usage = event
            return []
        if isinstance(event, Stop):
            return [self._chunk(b"{}", finish_reason_of(event.reason))]
        self._closed = True  # End or Failure: nothing follows
        if isinstance(event, End):
            if self._usage is None:
                return [DONE_EVENT]
            usage = b',"choices":[],"usage":' + compact_json(usage_json(self._usage))
            return [data_event(self._started_head() + usage + b"}\n\n"), DONE_EVENT]
        return read_frame(OPENAI_CHAT.dialect.error_event(stream_error_of(event)))  # a Failure

    def _start(self, start: Start) -> None:
        head = {
            "id": chat_id(start.id),
            "object": "chat.completion.chunk",
            "created": start.created if start.created is not None else int(time.time()),
            "model": self._model,
        }
        self._head = b"data: " + compact_json(head)[:-1]  # open: the choices follow
        self._content = self._head + _CHOICE + b'{"content":'

    def _started_head(self) -> bytes:
        if self._head is None:  # a delta before `Start`: answer with an id of our own
            self._start(Start(id="", model=self._model))
        assert self._head is not None
        return self._head

    def _chunk(self, delta: bytes, finish_reason: str | None = None) -> SSEEvent:
        """A chunk of choice 0 with `delta` (its JSON)."""
        finish = b"null" if finish_reason is None else b'"' + finish_reason.encode() + b'"'
        return data_event(
            b"".join(
                (
                    self._started_head(),
                    _CHOICE,
                    delta,
                    b',"logprobs":null,"finish_reason":',
                    finish,
                    b"}]}\n\n",
                )
            )
        )
