"""The fields of a Chat Completions request the gateway reads: `model`, a non-empty `messages`,
`stream`; everything else is forwarded as the client wrote it."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gateway.apis.request import EdgeRequest

__all__ = ["ChatRequest"]


class ChatRequest(EdgeRequest):
    """The fields of a Chat Completions request that the gateway itself reads."""

    messages: list[Any] = Field(min_length=1)
