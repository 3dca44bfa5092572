"""OpenAI Embeddings (`POST /v1/embeddings`): the `openai` SDK's `embeddings.create`, float
vectors or base64. Never streams; the answer is relayed as the upstream wrote it."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gateway.apis.base import Api
from gateway.apis.openai_chat.dialect import OpenAIDialect
from gateway.apis.openai_embeddings.mock_wire import EmbeddingsMockWire
from gateway.apis.request import WholeAnswerRequest

__all__ = ["OPENAI_EMBEDDINGS", "EmbeddingsRequest"]


class EmbeddingsRequest(WholeAnswerRequest):
    """The fields of an embeddings request the gateway reads: `model` and an `input`."""

    input: Any = Field()


OPENAI_EMBEDDINGS = Api(
    name="embeddings",
    path="/v1/embeddings",
    upstream_path="/embeddings",
    dialect=OpenAIDialect(),
    request=EmbeddingsRequest,
    mock_wire=EmbeddingsMockWire,
)
