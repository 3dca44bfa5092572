"""`Translation`: one call of a client's request made in another API, and its answer back.

`translation_for(client, upstream)` says whether a client of API `client` can be served by an
upstream speaking `upstream` (both have codecs); `Translation.prepare` decodes the client's body
into a `Conversation` and encodes it for the target. The answer comes back through
`Translation.stream()` (a `StreamTranslation`: the upstream's SSE events in, the client API's
events out, event by event) or `Translation.answer()` (a whole answer).

The client API's events leave here as the `SSEEvent`s the encoder wrote (each what an
`SSEDecoder` reads from its frame; one over the stream's event limit raises as the upstream's
own decoder would): the relay judges them with the client dialect's tracker exactly as it
judges a same-API stream (cut detection, usage, error events), and writes their bytes as they
are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.apis import Api
from gateway.streaming import SSEDecoder, SSEEvent
from gateway.translation.answer import AnswerEvent
from gateway.translation.codec import Codec, EncodeOptions, StreamDecoder, StreamEncoder
from gateway.translation.conversation import Conversation

__all__ = [
    "StreamTranslation",
    "TranslatedCall",
    "Translation",
    "register_codec",
    "translation_for",
]

_CODECS: dict[str, Codec] = {}


def register_codec(codec: Codec) -> None:
    """Make `codec`'s API translatable (once per API, at import)."""
    _CODECS[codec.api.name] = codec


def translation_for(client: Api, upstream: Api) -> Translation | None:
    """The translation serving `client`'s requests by `upstream`, or None: the same API (no
    translation), or an API without a codec."""
    if client is upstream:
        return None
    client_codec, upstream_codec = _CODECS.get(client.name), _CODECS.get(upstream.name)
    if client_codec is None or upstream_codec is None:
        return None
    return Translation(client_codec, upstream_codec)


@dataclass(frozen=True, slots=True)
class Translation:
    """Between a client API's codec and an upstream API's codec."""

    client: Codec
    upstream: Codec

    def prepare(
        self, body: Mapping[str, Any], *, model: str, options: EncodeOptions
    ) -> tuple[TranslatedCall, dict[str, Any]]:
        """The client's `body` decoded, and the upstream's body for `model` encoded from it
        (raises `UntranslatableParameter` for what the upstream cannot honour)."""
        conversation = self.client.decode_request(body)
        payload = self.upstream.encode_request(conversation, model=model, options=options)
        return TranslatedCall(self, conversation), payload


@dataclass(frozen=True, slots=True)
class TranslatedCall:
    """One call made through a translation: what its answer is translated with."""

    translation: Translation
    conversation: Conversation  # the client's request, decoded

    def stream(self, *, max_event_bytes: int) -> StreamTranslation:
        """A fresh translator of this call's stream."""
        return StreamTranslation(
            self.translation.upstream.stream_decoder(),
            self.translation.client.stream_encoder(self.conversation),
            max_event_bytes,
        )

    def answer(self, answer: Mapping[str, Any]) -> dict[str, Any]:
        """The upstream's whole answer as the client's API writes it."""
        translation = self.translation
        events = translation.upstream.decode_answer(answer)
        return translation.client.encode_answer(events, self.conversation)


class StreamTranslation:
    """One translated stream: upstream events in, the client API's events out."""

    __slots__ = ("_decoder", "_encoder", "_framer", "_max_event_bytes")

    def __init__(self, decoder: StreamDecoder, encoder: StreamEncoder, max_event_bytes: int):
        self._decoder = decoder
        self._encoder = encoder
        self._max_event_bytes = max_event_bytes
        #: Reads an event over the limit, to raise as the upstream's own decoder would.
        self._framer = SSEDecoder(max_event_bytes=max_event_bytes, keep_dataless=False)

    def feed(self, events: list[SSEEvent]) -> list[SSEEvent]:
        """The client's events for the upstream's `events` (complete ones, in order)."""
        feed = self._decoder.feed
        if len(events) == 1:  # the usual read: one event
            return self._encode(feed(events[0]))
        answer: list[AnswerEvent] = []
        for event in events:
            answer += feed(event)
        return self._encode(answer)

    def finish(self) -> list[SSEEvent]:
        """The upstream's body ended cleanly: what that ending still says to the client."""
        return self._encode(self._decoder.finish())

    def _encode(self, answer: list[AnswerEvent]) -> list[SSEEvent]:
        if not answer:
            return []
        events: list[SSEEvent] = []
        written = self._encoder.events
        limit = self._max_event_bytes
        for item in answer:
            for event in written(item):
                if len(event.raw) > limit:
                    events += self._framer.feed(event.raw)
                else:
                    events.append(event)
        return events
