"""Anthropic Messages (`POST /v1/messages`): the API of the `anthropic` SDK's `messages`, and
of the servers compatible with it."""

from gateway.apis.anthropic_messages.dialect import AnthropicDialect
from gateway.apis.anthropic_messages.mock_wire import AnthropicMockWire
from gateway.apis.anthropic_messages.request import MessagesRequest, forwarded_anthropic_headers
from gateway.apis.anthropic_messages.splice import AnthropicSplice
from gateway.apis.base import Api

__all__ = [
    "ANTHROPIC_MESSAGES",
    "AnthropicDialect",
    "AnthropicMockWire",
    "AnthropicSplice",
    "MessagesRequest",
]

ANTHROPIC_MESSAGES = Api(
    name="messages",
    path="/v1/messages",
    upstream_path="/v1/messages",
    dialect=AnthropicDialect(),
    request=MessagesRequest,
    mock_wire=AnthropicMockWire,
    splice=AnthropicSplice,
    forwarded_headers=forwarded_anthropic_headers,
)
