"""The `openai` provider: any OpenAI-compatible Chat Completions endpoint.

OpenAI itself, vLLM, Ollama, llama.cpp, LM Studio, Groq, Together, OpenRouter... all take the
same request at `{base_url}/chat/completions` and stream the same SSE chunks. The provider
forwards the client's body (with the target's model name, set by the router), authenticates
with the key from its settings (never the client's; `Authorization: Bearer` unless the upstream's
`auth_scheme` says `x-api-key`), and reads the answer through the upstream's pooled connections
(`gateway.providers.http`, where error answers are translated, over `gateway.transport`).
"""

from __future__ import annotations

from gateway.apis import OPENAI_CHAT, OPENAI_COMPLETIONS, OPENAI_EMBEDDINGS, OPENAI_RESPONSES
from gateway.providers.http import HTTPProvider

__all__ = ["OpenAIProvider"]


class OpenAIProvider(HTTPProvider):
    """An OpenAI-compatible upstream reached over HTTP(S)."""

    default_auth_scheme = "bearer"
    vendor = "openai"
    spoken_apis = (OPENAI_CHAT, OPENAI_RESPONSES, OPENAI_EMBEDDINGS, OPENAI_COMPLETIONS)
