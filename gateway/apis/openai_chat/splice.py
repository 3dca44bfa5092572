"""Continuing a cut Chat Completions stream: one choice's `delta.content` (see
`gateway.apis.splice` for what a splice does)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gateway.apis.splice import Splice, event_of, loads_data
from gateway.streaming import SSEEvent

__all__ = ["OpenAISplice"]


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
            chunk = loads_data(event.data)
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
            chunk = loads_data(event.data)
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
            out.append(event_of(chunk))
        return self.observe(out)
