"""OpenAI legacy Completions (`POST /v1/completions`): `text_completion` chunks ended by
`data: [DONE]`, streaming and not. Its chunks are judged like chat's (a choice's
`finish_reason` completes the answer; `usage` is kept), so it shares the chat dialect, and its
streams are asked for their usage as chat's are (`stream_options.include_usage`); a cut
stream is not continued (no prefill in this API)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gateway.apis.base import Api
from gateway.apis.openai_chat.dialect import OpenAIDialect
from gateway.apis.openai_chat.stream_usage import stream_usage_fields
from gateway.apis.openai_completions.mock_wire import CompletionsMockWire
from gateway.apis.request import EdgeRequest

__all__ = ["OPENAI_COMPLETIONS", "CompletionsRequest"]


class CompletionsRequest(EdgeRequest):
    """The fields of a completions request the gateway reads: `model`, a `prompt`, `stream`."""

    prompt: Any = Field()


OPENAI_COMPLETIONS = Api(
    name="completions",
    path="/v1/completions",
    upstream_path="/completions",
    dialect=OpenAIDialect(),
    request=CompletionsRequest,
    mock_wire=CompletionsMockWire,
    stream_usage=stream_usage_fields,
)
