"""`Splice`: what it takes to continue a stream that died after its first byte, per dialect.

A continuation asks a target that supports assistant prefill for the same conversation with the
text streamed so far as a final assistant message, and splices its answer into the client's
stream, so that the client reads one answer. A `Splice` (one per stream) does the dialect's
part of that:

- `observe(events)`: read every event relayed to the client, keeping the assistant text so far
  and whether continuing it is *sound*: only plain text from one choice / one text block can be
  continued by prefill (a tool call, a reasoning or thinking part, a refusal, several choices
  cannot, nor a text block already closed); and whether the answer is *complete* (a
  `finish_reason` / `stop_reason`: nothing to continue).
- `body(request)`: the continuation request - the client's own, with the text so far as the
  final assistant message (appended to the client's own prefill if it ended with one). Trailing
  whitespace is taken off the prefill (Anthropic rejects it) and remembered.
- `rewrite(events)`: the continuation's events as the client's stream needs them. OpenAI: every
  chunk gets the first stream's `id` and `created`, the repeated `role` goes, everything else
  is kept (the `model` says who wrote those tokens). Anthropic: the second `message_start` and
  the text block's `content_block_start` are dropped (the client's message and block are still
  open); the deltas, `content_block_stop`, `message_delta` and `message_stop` pass. In both,
  the whitespace taken off the prefill is not sent twice: the continuation's leading text is
  matched against it and the repeated part dropped.

Events a splice does not change are passed on as they came, byte-exact; a changed one is
re-encoded as one `data:` line of compact JSON (no raw line break can get in).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, ClassVar

from gateway.streaming import SSEEvent, loads_object

__all__ = ["SPLICES", "AnthropicSplice", "OpenAISplice", "Splice"]


def _loads(data: str | None) -> dict[str, Any] | None:
    return None if data is None else loads_object(data)


def _event(payload: dict[str, Any], name: str | None = None) -> SSEEvent:
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {name}\n" if name else ""
    return SSEEvent(raw=f"{head}data: {data}\n\n".encode(), data=data, event=name)


def _text_of(content: object) -> str | None:
    """The text of a message's content (a string, or text blocks only); None otherwise."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(_is_text_block(block) for block in content):
        return "".join(block["text"] for block in content)
    return None


def _is_text_block(block: object) -> bool:
    return (
        isinstance(block, dict)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    )


class Splice:
    """One stream's continuation state; the dialect's subclass reads and writes its events."""

    #: Fields a continuation request adds to the client's body (the dialect's prefill switch).
    prefill_fields: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, request: Mapping[str, Any]) -> None:
        self.text = ""  # the assistant text the client has received
        self.sound = self._request_sound(request)  # it can be continued by prefill
        self.complete = False  # the answer said it is complete: nothing to continue
        self.diverged = False  # a continuation did not continue the text: stop there
        self._pending = ""  # whitespace taken off the prefill, not yet matched

    def _request_sound(self, request: Mapping[str, Any]) -> bool:
        return isinstance(request.get("messages"), list)

    def observe(self, events: list[SSEEvent]) -> list[SSEEvent]:
        """Note what `events` tell the client (they are relayed as they are); returns them."""
        raise NotImplementedError

    def rewrite(self, events: list[SSEEvent]) -> list[SSEEvent]:
        """A continuation's events as the client's stream needs them (then observed)."""
        raise NotImplementedError

    def body(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The continuation request: `request` with the text so far as the assistant's."""
        body = copy.deepcopy(dict(request))
        messages: list[Any] = body["messages"]
        prefill = self.text
        if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
            prefill = (_text_of(messages.pop().get("content")) or "") + prefill
        stripped = prefill.rstrip()
        self._pending = prefill[len(stripped) :]
        if stripped:
            messages.append({"role": "assistant", "content": stripped})
            body.update(self.prefill_fields)
        return body

    def _dedupe(self, text: str) -> str:
        """`text` without the leading whitespace the client already has."""
        pending = self._pending
        if not pending:
            return text
        same = 0
        while same < min(len(pending), len(text)) and pending[same] == text[same]:
            same += 1
        if same < len(text) or same == len(pending):
            self._pending = ""  # matched all it could: the rest is new
        else:
            self._pending = pending[same:]
        return text[same:]


class OpenAISplice(Splice):
    """Chat Completions: one choice's `delta.content`; `[DONE]` passes as it is."""

    # vLLM's switch to continue the final assistant message instead of starting a new one;
    # llama.cpp and Ollama continue it without being asked and ignore these.
    prefill_fields: ClassVar[Mapping[str, Any]] = {
        "continue_final_message": True,
        "add_generation_prompt": False,
    }

    def __init__(self, request: Mapping[str, Any]) -> None:
        super().__init__(request)
        self._identity: dict[str, Any] = {}  # the first stream's `id` and `created`

    def _request_sound(self, request: Mapping[str, Any]) -> bool:
        n = request.get("n", 1)
        return super()._request_sound(request) and (n is None or n == 1)

    def observe(self, events: list[SSEEvent]) -> list[SSEEvent]:
        for event in events:
            chunk = _loads(event.data)
            if chunk is None:
                continue
            if not self._identity:
                self._identity = {k: chunk[k] for k in ("id", "created") if k in chunk}
            choices = chunk.get("choices")
            if isinstance(choices, list):
                for choice in choices:
                    self._observe_choice(choice)
            elif choices is not None:
                self.sound = False  # relayed as it is (the tracker allows it), never continued
        return events

    def _observe_choice(self, choice: Any) -> None:
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            self.sound = False
            return
        if choice.get("finish_reason"):
            self.complete = True
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return
        extra = {k for k, v in delta.items() if v not in (None, "", [])} - {"role", "content"}
        content = delta.get("content")
        if extra or not isinstance(content, str | None):
            self.sound = False
        elif content:
            self.text += content

    def rewrite(self, events: list[SSEEvent]) -> list[SSEEvent]:
        out = []
        for event in events:
            chunk = _loads(event.data)
            if chunk is None:
                out.append(event)  # [DONE] (or what the tracker will skip)
                continue
            chunk.update(self._identity)
            choices = chunk.get("choices")
            for choice in choices if isinstance(choices, list) else ():
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if isinstance(delta, dict):
                    delta.pop("role", None)
                    if isinstance(delta.get("content"), str):
                        delta["content"] = self._dedupe(delta["content"])
            out.append(_event(chunk))
        return self.observe(out)


class AnthropicSplice(Splice):
    """Messages: one text block (index 0) of `text_delta`s."""

    def _request_sound(self, request: Mapping[str, Any]) -> bool:
        thinking = request.get("thinking")
        thinks = isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled")
        return super()._request_sound(request) and not thinks

    def observe(self, events: list[SSEEvent]) -> list[SSEEvent]:
        for event in events:
            payload = _loads(event.data)
            if payload is not None:
                self._observe(event.event or payload.get("type"), payload)
        return events

    def _observe(self, kind: object, payload: dict[str, Any]) -> None:
        if kind == "content_block_start":
            block = payload.get("content_block")
            if payload.get("index") != 0 or not _is_text_block(block):
                self.sound = False
        elif kind == "content_block_delta":
            delta = payload.get("delta")
            if payload.get("index") != 0 or not isinstance(delta, dict):
                self.sound = False
            elif delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                self.text += delta["text"]
            else:
                self.sound = False
        elif kind == "content_block_stop":
            self.sound = False  # the text block ended: a prefill would have to open another
        elif kind == "message_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self.complete = True

    def rewrite(self, events: list[SSEEvent]) -> list[SSEEvent]:
        out = []
        for event in events:
            payload = _loads(event.data)
            kind = event.event or (payload or {}).get("type")
            if payload is None or kind in ("ping", "content_block_stop", "message_delta"):
                out.append(event)
            elif kind == "message_start":
                continue  # the client's message is still open
            elif kind == "content_block_start" and payload.get("index") == 0:
                block = payload.get("content_block")
                if not isinstance(block, dict) or block.get("type") != "text":
                    self.diverged = True  # not the text the client's block holds
                continue  # ...and so is its text block
            elif kind == "content_block_delta" and payload.get("index") == 0:
                delta = payload.get("delta")
                if isinstance(delta, dict) and isinstance(delta.get("text"), str):
                    text = self._dedupe(delta["text"])
                    if not text:
                        continue
                    if text != delta["text"]:
                        delta["text"] = text
                        event = _event(payload, "content_block_delta")
                out.append(event)
            else:
                out.append(event)
        return self.observe(out)


SPLICES: Mapping[str, type[Splice]] = {"openai": OpenAISplice, "anthropic": AnthropicSplice}
