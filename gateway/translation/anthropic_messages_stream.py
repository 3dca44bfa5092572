"""A Messages stream read into answer events, and answer events written as a Messages stream.

Anthropic's stream is `message_start`, then content blocks - each `content_block_start`, its
`content_block_delta`s, `content_block_stop` - then `message_delta` (the stop reason and the
final usage) and `message_stop`; `ping`s anywhere, and `event: error` for its own failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.streaming import SSEEvent, compact_json, loads_object, shape_reader
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
from gateway.translation.anthropic_messages_terms import (
    arguments_text,
    error_frame,
    failure_of,
    merged_usage,
    message_id,
    stop_of,
    stop_reason_word,
    string_of,
    usage_fields,
    usage_of,
)
from gateway.translation.codec import StreamEncoder
from gateway.translation.frames import named_event, read_frame

__all__ = ["MessagesStreamDecoder", "MessagesStreamEncoder", "message_event"]


def message_event(payload: dict[str, Any]) -> SSEEvent:
    """One event as Anthropic frames it: `event: <type>` and the payload on one `data:` line."""
    return named_event(payload["type"], compact_json(payload))


#: The field each kind of content block delta carries its value in.
_FIELDS = {
    "text_delta": "text",
    "input_json_delta": "partial_json",
    "thinking_delta": "thinking",
    "signature_delta": "signature",
}


class _Delta(msgspec.Struct):
    type: Any = None
    text: Any = None
    partial_json: Any = None
    thinking: Any = None
    signature: Any = None


class _BlockDelta(msgspec.Struct):
    """What the decoder reads of a `content_block_delta` (`shape_reader`: None for any other
    shape, which the whole payload's reading then judges)."""

    index: Any = None
    delta: _Delta | None = None


_read_block_delta = shape_reader(_BlockDelta)


@dataclass(slots=True)
class _Block:
    """A content block of the upstream's message, as the decoder numbers it."""

    kind: str  # text, thinking, tool_use
    part: int | None = None  # its answer part, once it has said something
    tool: int | None = None  # its index among the answer's tool calls (tool_use)


class MessagesStreamDecoder:
    """An upstream's Messages stream, event by event (`StreamDecoder`).

    A block's `part` counts the blocks that said something, from 0: the block's index, unless
    the upstream sent a block no answer event can carry (a `redacted_thinking` block's opaque
    data, Anthropic's server-tool blocks), which is skipped and not counted. The stream is
    complete at `message_stop`, or - as the dialect's tracker judges it - when it ends cleanly
    after a `message_delta` with a stop reason (`finish`). A `content_block_delta` - most of a
    stream - is read into only the fields it uses (`_BlockDelta`); what does not read so is
    read whole, and both readings say the same events (a property test holds them to it).
    """

    __slots__ = ("_blocks", "_done", "_parts", "_started", "_stopped", "_tools", "_usage")

    def __init__(self) -> None:
        self._blocks: dict[int, _Block] = {}
        self._parts = 0
        self._tools = 0
        self._usage: Usage | None = None
        self._started = False
        self._stopped = False
        self._done = False

    def feed(self, event: SSEEvent) -> list[AnswerEvent]:
        data = event.data
        if self._done or data is None:
            return []
        if event.event == "content_block_delta":  # most of a stream: read only its fields
            read = _read_block_delta(data)
            if read is not None:
                block = self._blocks.get(read.index) if isinstance(read.index, int) else None
                delta = read.delta
                if block is None or delta is None:
                    return []
                field = _FIELDS.get(delta.type) if isinstance(delta.type, str) else None
                return self._delta(block, delta.type, getattr(delta, field) if field else None)
        payload = loads_object(data)
        if payload is None:
            return []
        kind = event.event or payload.get("type")
        if kind == "message_start":
            return self._message_start(payload.get("message"))
        if kind == "content_block_start":
            return self._block_start(payload.get("index"), payload.get("content_block"))
        if kind == "content_block_delta":
            index = payload.get("index")
            block = self._blocks.get(index) if isinstance(index, int) else None
            delta = payload.get("delta")
            if block is None or not isinstance(delta, dict):
                return []
            kind = delta.get("type")
            field = _FIELDS.get(kind) if isinstance(kind, str) else None
            return self._delta(block, kind, delta.get(field) if field else None)
        if kind == "message_delta":
            return self._message_delta(payload)
        if kind == "message_stop":
            self._done = True
            return [End()]
        if kind == "error":
            self._done = True
            return [failure_of(payload)]
        return []  # ping, content_block_stop, and what this codec does not know

    def finish(self) -> list[AnswerEvent]:
        if self._done or not self._stopped:
            return []
        self._done = True
        return [End()]

    def _message_start(self, message: object) -> list[AnswerEvent]:
        if not isinstance(message, dict):
            return []
        events: list[AnswerEvent] = []
        if not self._started:
            self._started = True
            ident, model = string_of(message.get("id")), string_of(message.get("model"))
            events.append(Start(id=ident, model=model))
        usage = usage_of(message.get("usage"), self._usage)
        if usage is not None:
            self._usage = usage
            events.append(usage)
        return events

    def _part(self, block: _Block) -> int:
        if block.part is None:
            block.part = self._parts
            self._parts += 1
        return block.part

    def _block_start(self, index: object, content: object) -> list[AnswerEvent]:
        if not isinstance(index, int) or not isinstance(content, dict):
            return []
        kind = content.get("type")
        if kind == "tool_use":
            tool = self._tools
            self._tools += 1
            block = self._blocks[index] = _Block("tool_use", tool=tool)
            ident, name = string_of(content.get("id")), string_of(content.get("name"))
            events: list[AnswerEvent] = [ToolCallStart(tool, ident, name, self._part(block))]
            whole = content.get("input")
            if isinstance(whole, dict) and whole:  # a block that came whole, not as deltas
                events += self._delta(block, "input_json_delta", arguments_text(whole))
            return events
        if kind == "text":
            block = self._blocks[index] = _Block("text")
            return self._delta(block, "text_delta", content.get("text"))
        if kind == "thinking":
            block = self._blocks[index] = _Block("thinking")
            return [
                *self._delta(block, "thinking_delta", content.get("thinking")),
                *self._delta(block, "signature_delta", content.get("signature")),
            ]
        return []  # redacted_thinking, server tools and their results: nothing to carry

    def _delta(self, block: _Block, kind: object, value: object) -> list[AnswerEvent]:
        """What a delta of `kind` to `block` says, `value` its field of that kind (`_FIELDS`):
        nothing for an empty one, one of another block's kind, citations and what this codec
        does not know."""
        if not isinstance(value, str) or not value:
            return []
        if kind == "text_delta" and block.kind == "text":
            return [TextDelta(value, self._part(block))]
        if kind == "input_json_delta" and block.tool is not None:
            return [ToolCallDelta(block.tool, value, self._part(block))]
        if kind == "thinking_delta" and block.kind == "thinking":
            return [ReasoningDelta(value, self._part(block))]
        if kind == "signature_delta" and block.kind == "thinking":
            return [ReasoningDelta("", self._part(block), signature=value)]
        return []

    def _message_delta(self, payload: dict[str, Any]) -> list[AnswerEvent]:
        events: list[AnswerEvent] = []
        usage = usage_of(payload.get("usage"), self._usage)
        if usage is not None:
            self._usage = usage
            events.append(usage)
        delta = payload.get("delta")
        if isinstance(delta, dict):
            stop = stop_of(delta.get("stop_reason"), delta.get("stop_sequence"))
            if stop is not None:
                self._stopped = True
                events.append(stop)
        return events


class MessagesStreamEncoder(StreamEncoder):
    """A client's Messages stream, written from answer events (`StreamEncoder`).

    - `message_start` is written at the first event after `Start` that is not a `Usage`, so
      that it holds the input tokens an upstream reports with its own start (Anthropic's,
      Responses'); an upstream that reports usage at the end only (OpenAI's) gets zeros there,
      and the final figures - input, cache and output tokens - in `message_delta`'s usage,
      which the SDK's accumulator takes over `message_start`'s.
    - Each answer part is a content block, opened by its first event and closed
      (`content_block_stop`) when another part's event arrives or at the end. Text is a `text`
      block, reasoning a `thinking` block (its `signature_delta` when the upstream signed it:
      a thinking block of another API's reasoning has none, its signature stays ""), a tool
      call a `tool_use` block of `input_json_delta`s. Where an upstream interleaves parts
      (OpenAI's parallel tool calls), a late fragment of a closed tool call is written to
      its own block's index (the SDK's accumulator appends it there; nothing is lost), and
      late text or reasoning opens a new block of its kind.
    - `Stop` and `Usage` are held until `End`, which writes `message_delta` (the stop reason,
      `end_turn` or - when the answer called tools - `tool_use` if the upstream gave none)
      and `message_stop`. A `Failure` is the dialect's `event: error`, and nothing follows.
    """

    __slots__ = (
        "_blocks",
        "_count",
        "_done",
        "_model",
        "_open",
        "_opened",
        "_start",
        "_stop",
        "_tools",
        "_usage",
    )

    def __init__(self, model: str) -> None:
        self._model = model
        self._start: Start | None = None
        self._opened = False  # message_start written
        self._usage: Usage | None = None
        self._stop: Stop | None = None
        #: Each part's block index, by ("text" | "thinking", part) or ("tool", tool index).
        self._blocks: dict[tuple[str, int], int] = {}
        self._open: tuple[str, int] | None = None
        self._count = 0  # blocks opened
        self._tools = False
        self._done = False

    def events(self, event: AnswerEvent) -> list[SSEEvent]:
        if self._done:
            return []
        if isinstance(event, Start):
            self._start = self._start or event
            return []
        if isinstance(event, Usage):
            self._usage = merged_usage(self._usage, event)
            return []
        if isinstance(event, Failure):
            self._done = True
            return read_frame(error_frame(event))
        out = self._preamble()
        if isinstance(event, TextDelta):
            out += self._enter(("text", event.part), {"type": "text", "text": ""}, reopen=True)
            if event.text:
                out.append(self._delta({"type": "text_delta", "text": event.text}))
        elif isinstance(event, ReasoningDelta):
            thinking = {"type": "thinking", "thinking": "", "signature": ""}
            out += self._enter(("thinking", event.part), thinking, reopen=True)
            if event.text:
                out.append(self._delta({"type": "thinking_delta", "thinking": event.text}))
            if event.signature:
                out.append(self._delta({"type": "signature_delta", "signature": event.signature}))
        elif isinstance(event, ToolCallStart):
            if ("tool", event.index) not in self._blocks:
                self._tools = True
                block = {"type": "tool_use", "id": event.id, "name": event.name, "input": {}}
                out += self._enter(("tool", event.index), block, reopen=False)
        elif isinstance(event, ToolCallDelta):
            index = self._blocks.get(("tool", event.index))
            if index is not None and event.arguments:
                delta = {"type": "input_json_delta", "partial_json": event.arguments}
                out.append(
                    message_event({"type": "content_block_delta", "index": index, "delta": delta})
                )
        elif isinstance(event, Stop):
            self._stop = event
        elif isinstance(event, End):
            out += self._close() + self._ending()
            self._done = True
        return out

    def _preamble(self) -> list[SSEEvent]:
        if self._opened:
            return []
        self._opened = True
        start = self._start or Start(id="", model=self._model)
        usage = {"input_tokens": 0, **usage_fields(self._usage or Usage())}
        message: dict[str, Any] = {
            "id": message_id(start.id),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return [message_event({"type": "message_start", "message": message})]

    def _enter(
        self, key: tuple[str, int], block: dict[str, Any], *, reopen: bool
    ) -> list[SSEEvent]:
        """Open `key`'s block unless it is the open one (closing that first); a closed block
        is opened anew if `reopen`, else left closed (its deltas go to its index)."""
        if key == self._open or (key in self._blocks and not reopen):
            return []
        out = self._close()
        index = self._blocks[key] = self._count
        self._count += 1
        self._open = key
        out.append(
            message_event({"type": "content_block_start", "index": index, "content_block": block})
        )
        return out

    def _delta(self, delta: dict[str, Any]) -> SSEEvent:
        assert self._open is not None
        index = self._blocks[self._open]
        return message_event({"type": "content_block_delta", "index": index, "delta": delta})

    def _close(self) -> list[SSEEvent]:
        if self._open is None:
            return []
        index = self._blocks[self._open]
        self._open = None
        return [message_event({"type": "content_block_stop", "index": index})]

    def _ending(self) -> list[SSEEvent]:
        stop = self._stop or Stop(StopReason.TOOL_USE if self._tools else StopReason.END_TURN)
        sequence = stop.stop_sequence if stop.reason is StopReason.STOP_SEQUENCE else None
        delta = {"stop_reason": stop_reason_word(stop), "stop_sequence": sequence}
        usage = usage_fields(self._usage or Usage())
        return [
            message_event({"type": "message_delta", "delta": delta, "usage": usage}),
            message_event({"type": "message_stop"}),
        ]
