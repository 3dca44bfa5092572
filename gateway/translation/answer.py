"""The typed answer events every API's stream is decoded into and encoded from.

An answer - streamed or whole - is a sequence of these, in order:

    Start, then any of TextDelta / ReasoningDelta / ToolCallStart / ToolCallDelta,
    then Usage (zero or more: the latest wins), then Stop, then End

(or, at any point, one `Failure`, after which nothing follows). A whole (non-streaming)
answer is the events its stream would have had, folded: `Start`, one delta per content part,
`Usage`, `Stop`, `End`.

Indices: `ToolCallStart.index` / `ToolCallDelta.index` number the answer's tool calls from 0 in
the order they started (OpenAI's `tool_calls[].index`); `part` numbers the answer's content
parts - text, reasoning and tool calls alike - from 0 in the order they started (Anthropic's
content block index, Responses' output index). A decoder sets both; an encoder uses the one its
API needs. A part's deltas are contiguous in most upstreams but need not be (OpenAI may
interleave parallel tool calls): an encoder that must close a part before opening the next
(Anthropic, Responses) closes it when another part's delta arrives.

These are values only: no I/O, no aiohttp, no JSON. Decoders and encoders
(`gateway.translation.codec`) are pure and table-testable.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "AnswerEvent",
    "End",
    "Failure",
    "ReasoningDelta",
    "Start",
    "Stop",
    "StopReason",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallStart",
    "Usage",
]


class StopReason(enum.StrEnum):
    """Why an answer ended, in one vocabulary (each API's own word is its codec's business:
    OpenAI `stop`/`length`/`tool_calls`/`content_filter`, Anthropic `end_turn`/`max_tokens`/
    `tool_use`/`stop_sequence`/`refusal`, Responses `completed`/`incomplete`)."""

    END_TURN = "end_turn"  # the model finished (OpenAI `stop`)
    MAX_TOKENS = "max_tokens"  # cut by the output limit (OpenAI `length`)
    TOOL_USE = "tool_use"  # it wants tool results (OpenAI `tool_calls`)
    STOP_SEQUENCE = "stop_sequence"  # a stop sequence matched (OpenAI says `stop`)
    CONTENT_FILTER = "content_filter"  # the provider's filter ended it
    REFUSAL = "refusal"  # the model refused (Anthropic `refusal`)


@dataclass(frozen=True, slots=True)
class Start:
    """The answer begins: its id and model as the upstream named them (an encoder may make
    its own id of the client API's shape from `id`)."""

    id: str
    model: str
    created: int | None = None  # seconds since the epoch, if the upstream said


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    part: int = 0


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """Reasoning text (Anthropic thinking, OpenAI reasoning summaries / `reasoning_content`);
    `signature` is Anthropic's, when the upstream sent one (it ends the thinking block)."""

    text: str
    part: int = 0
    signature: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    index: int  # among the answer's tool calls
    id: str
    name: str
    part: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a tool call's JSON arguments (fragments concatenate to the whole)."""

    index: int
    arguments: str
    part: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens as the upstream reported them (None: not reported). `input` counts every
    prompt token, cached ones included (OpenAI's sense; Anthropic's `input_tokens` plus its
    cache reads and writes); `cached` is the part read from a cache; `reasoning` is part of
    `output`."""

    input: int | None = None
    output: int | None = None
    cached: int | None = None
    cache_write: int | None = None
    reasoning: int | None = None


@dataclass(frozen=True, slots=True)
class Stop:
    reason: StopReason
    stop_sequence: str | None = None  # the one that matched, if the upstream said


@dataclass(frozen=True, slots=True)
class End:
    """The answer is complete (the upstream's terminal marker or its equivalent)."""


@dataclass(frozen=True, slots=True)
class Failure:
    """The upstream reported a failure mid-answer (its own error event): the client gets it
    as its API's error event, and the stream ends. `code` is the upstream's own code."""

    message: str
    code: str | None = None
    #: The error's kind in the gateway's categories' terms: `rate_limit`, `api_error`...
    category: str = "api_error"


AnswerEvent = (
    Start
    | TextDelta
    | ReasoningDelta
    | ToolCallStart
    | ToolCallDelta
    | Usage
    | Stop
    | End
    | Failure
)
