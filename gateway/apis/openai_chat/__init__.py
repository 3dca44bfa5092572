"""OpenAI Chat Completions (`POST /v1/chat/completions`): the API of the `openai` SDK's
`chat.completions`, and of every OpenAI-compatible server (vLLM, Ollama, llama.cpp, ...)."""

from gateway.apis.base import Api
from gateway.apis.openai_chat.dialect import OpenAIDialect
from gateway.apis.openai_chat.mock_wire import OpenAIMockWire
from gateway.apis.openai_chat.request import ChatRequest
from gateway.apis.openai_chat.splice import OpenAISplice
from gateway.apis.openai_chat.stream_usage import stream_usage_fields

__all__ = [
    "OPENAI_CHAT",
    "ChatRequest",
    "OpenAIDialect",
    "OpenAIMockWire",
    "OpenAISplice",
    "stream_usage_fields",
]

OPENAI_CHAT = Api(
    name="chat_completions",
    path="/v1/chat/completions",
    upstream_path="/chat/completions",
    dialect=OpenAIDialect(),
    request=ChatRequest,
    mock_wire=OpenAIMockWire,
    splice=OpenAISplice,
    stream_usage=stream_usage_fields,
)
