"""`Codec`: one API's request and answers, decoded into and encoded from the typed values.

Each API that translates has one codec (`gateway.translation.<api>`): it decodes its request
body into a `Conversation` and encodes a `Conversation` into its body; it decodes its stream
(event by event, `StreamDecoder`) and its whole answer into `AnswerEvent`s, and encodes
`AnswerEvent`s into its stream's frames (`StreamEncoder`) and its whole answer. A translation
between two APIs is the client API's codec and the target API's codec back to back (`Translation`):
N codecs, never N x N translators. A same-API call never goes through a codec: the relay stays
byte-exact.

Every function here is pure: no I/O, no aiohttp. A codec's decoders never raise on what an
upstream sends (an event they cannot read is skipped, as the dialect's tracker would); its
request decoder raises `InvalidRequest` on a body its API would refuse; its request encoder
raises `UntranslatableParameter` for what the target API cannot honour, unless
`EncodeOptions.drop_params`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.apis import Api
from gateway.streaming import SSEEvent
from gateway.translation.answer import AnswerEvent
from gateway.translation.conversation import Conversation

__all__ = ["Codec", "EncodeOptions", "StreamDecoder", "StreamEncoder"]


@dataclass(frozen=True, slots=True)
class EncodeOptions:
    """How a `Conversation` from another API is written for a target."""

    #: Leave out what the target cannot honour instead of refusing the request (the route's
    #: `drop_params`).
    drop_params: bool = False
    #: The output limit to send when the client gave none and the target API requires one
    #: (Anthropic's `max_tokens`): the target's `default_max_tokens`.
    default_max_tokens: int = 4096
    #: The target continues a final assistant message (its `prefill`): a `Conversation` that
    #: asks to (`continue_final`) may be sent to it; to any other it is refused (or, with
    #: `drop_params`, sent as a plain last turn).
    prefill: bool = False


class StreamDecoder(Protocol):
    """One upstream stream of the codec's API, read event by event."""

    def feed(self, event: SSEEvent) -> list[AnswerEvent]:
        """The answer events `event` says (none for a keep-alive or an event that says
        nothing new). After `End` or a `Failure`, nothing more."""
        ...

    def finish(self) -> list[AnswerEvent]:
        """The body ended cleanly here: the events that ending still says - `End` for an
        answer that said it was complete (OpenAI's `finish_reason` without `[DONE]`), else
        none (the stream was cut: the relay's tracker will say so)."""
        ...


class StreamEncoder(Protocol):
    """One client stream of the codec's API, written from answer events.

    An encoder subclasses this protocol: it writes `events`, and `encode` is their frames."""

    __slots__ = ()

    def events(self, event: AnswerEvent) -> list[SSEEvent]:
        """The client events `event` becomes, each exactly the `SSEEvent` an `SSEDecoder`
        reads from its frame (`raw`; `gateway.translation.frames` builds them): the API's own
        preamble at `Start` (or with the first event after it, for an API whose preamble
        carries what comes next: Anthropic's `message_start`, its input tokens), its terminal
        marker at `End`, its error event at a `Failure`. Frames are well-formed events of the
        API, each a whole event."""
        ...

    def encode(self, event: AnswerEvent) -> list[bytes]:
        """The complete SSE frames (`event: ...\\ndata: ...\\n\\n`) `event` becomes: the
        frames of its `events`."""
        return [written.raw for written in self.events(event)]


class Codec(Protocol):
    """One API's translation: see the module docstring."""

    @property
    def api(self) -> Api: ...

    def decode_request(self, body: Mapping[str, Any]) -> Conversation:
        """The client's body (already validated by the API's `EdgeRequest`)."""
        ...

    def encode_request(
        self, conversation: Conversation, *, model: str, options: EncodeOptions
    ) -> dict[str, Any]:
        """The body of a call to `model` in this API, for `conversation` (from another API)."""
        ...

    def stream_decoder(self) -> StreamDecoder: ...

    def stream_encoder(self, conversation: Conversation) -> StreamEncoder:
        """A client stream answering `conversation` (which may say what to include: OpenAI's
        `stream_options`, the model name the client used...)."""
        ...

    def decode_answer(self, answer: Mapping[str, Any]) -> list[AnswerEvent]:
        """A whole (non-streaming) answer of this API, as the events its stream would have
        had (folded: one delta per content part)."""
        ...

    def encode_answer(
        self, events: Sequence[AnswerEvent], conversation: Conversation
    ) -> dict[str, Any]:
        """The whole answer of this API the events make (a client's `stream: false`)."""
        ...
