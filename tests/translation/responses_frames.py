"""Helpers of the Responses codec's tests: recorded upstream streams in OpenAI's exact shapes
(numbered events, as `tests.support.responses_wire` frames them), and the encoder's frames
read back as (event name, JSON payload) pairs or as answer events."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from gateway.streaming import SSEDecoder
from gateway.translation import AnswerEvent, Conversation, Message, TextPart
from gateway.translation.openai_responses import CODEC
from tests.support import responses_wire as wire

__all__ = ["CONVERSATION", "Recorder", "encode_all", "payloads", "read_all"]

#: A streaming client's request: "hi", to the model `client-model`.
CONVERSATION = Conversation(
    model="client-model", messages=(Message("user", (TextPart("hi"),)),), stream=True
)


def payloads(frames: Iterable[bytes]) -> list[dict[str, Any]]:
    """Each frame's JSON payload; every frame is one whole event named as its `type`."""
    found: list[dict[str, Any]] = []
    for frame in frames:
        events = SSEDecoder().feed(frame)
        assert len(events) == 1, frame
        assert events[0].data is not None, frame
        payload = json.loads(events[0].data)
        assert events[0].event == payload["type"], frame
        found.append(payload)
    return found


def encode_all(events: Iterable[AnswerEvent], conversation: Conversation) -> list[bytes]:
    encoder = CODEC.stream_encoder(conversation)
    return [frame for event in events for frame in encoder.encode(event)]


def read_all(frames: Iterable[bytes], *, finish: bool = True) -> list[AnswerEvent]:
    """The answer events a Responses stream's bytes decode into (fed as one body)."""
    decoder = CODEC.stream_decoder()
    sse = SSEDecoder()
    found: list[AnswerEvent] = []
    for event in sse.feed(b"".join(frames)) + sse.finish():
        found += decoder.feed(event)
    return found + (decoder.finish() if finish else [])


class Recorder:
    """Builds a recorded Responses stream event by event, numbered from 0."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def add(self, kind: str, **fields: Any) -> Recorder:
        self.frames.append(wire.responses_event(kind, len(self.frames), **fields))
        return self

    def created(self, model: str = "gpt-upstream") -> Recorder:
        response = wire.response_object("in_progress", model=model)
        return self.add("response.created", response=response).add(
            "response.in_progress", response=response
        )

    def call(self, index: int, call_id: str, name: str, *fragments: str) -> Recorder:
        """A whole function_call item at `index`, its arguments streamed in `fragments`."""
        item = {
            "id": f"fc_{index}",
            "type": "function_call",
            "status": "in_progress",
            "arguments": "",
            "call_id": call_id,
            "name": name,
        }
        self.add("response.output_item.added", output_index=index, item=item)
        for fragment in fragments:
            self.add(
                "response.function_call_arguments.delta",
                item_id=f"fc_{index}",
                output_index=index,
                delta=fragment,
            )
        whole = "".join(fragments)
        self.add(
            "response.function_call_arguments.done",
            item_id=f"fc_{index}",
            output_index=index,
            arguments=whole,
        )
        done = {**item, "status": "completed", "arguments": whole}
        return self.add("response.output_item.done", output_index=index, item=done)

    def terminal(self, kind: str, output: list[dict[str, Any]], **response: Any) -> Recorder:
        status = kind.removeprefix("response.")
        body = {**wire.response_object(status), "output": output, **response}
        return self.add(kind, response=body)
