"""Continuing a cut Messages stream: one text block of `text_delta`s (see
`gateway.apis.splice` for what a splice does).

The continuation's `message_start` is passed on as it came: it holds that call's usage (its
input and cache tokens), which the dialect's tracker counts before it drops the event (the
client's message is still open, `gateway.apis.anthropic_messages.dialect`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.apis.splice import Splice, event_of, is_text_block, loads_data
from gateway.streaming import SSEEvent

__all__ = ["AnthropicSplice"]


class AnthropicSplice(Splice):
    """Messages: one text block (index 0) of `text_delta`s."""

    def _request_sound(self, request: Mapping[str, Any]) -> bool:
        thinking = request.get("thinking")
        thinks = isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled")
        return super()._request_sound(request) and not thinks

    def observe(self, events: list[SSEEvent]) -> list[SSEEvent]:
        for event in events:
            payload = loads_data(event.data)
            if payload is not None:
                self._observe(event.event or payload.get("type"), payload)
        return events

    def _observe(self, kind: object, payload: dict[str, Any]) -> None:
        if kind == "content_block_start":
            block = payload.get("content_block")
            if payload.get("index") != 0 or not is_text_block(block):
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
            payload = loads_data(event.data)
            kind = event.event or (payload or {}).get("type")
            if payload is None or kind in ("ping", "content_block_stop", "message_delta"):
                out.append(event)
            elif kind == "content_block_start" and payload.get("index") == 0:
                block = payload.get("content_block")
                if not isinstance(block, dict) or block.get("type") != "text":
                    self.diverged = True  # not the text the client's block holds
                continue  # the client's text block is still open
            elif kind == "content_block_delta" and payload.get("index") == 0:
                delta = payload.get("delta")
                if isinstance(delta, dict) and isinstance(delta.get("text"), str):
                    text = self._dedupe(delta["text"])
                    if not text:
                        continue
                    if text != delta["text"]:
                        delta["text"] = text
                        event = event_of(payload, "content_block_delta")
                out.append(event)
            else:
                out.append(event)
        return self.observe(out)
