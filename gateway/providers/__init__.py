"""Upstream providers: one module per upstream API, plus the registry that builds them."""

from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.mock import MockProvider
from gateway.providers.openai import OpenAIProvider
from gateway.providers.registry import PROVIDER_KINDS, build_providers
from gateway.providers.upstream import Provider, UpstreamRequest, UpstreamResponse

__all__ = [
    "PROVIDER_KINDS",
    "AnthropicProvider",
    "MockProvider",
    "OpenAIProvider",
    "Provider",
    "UpstreamRequest",
    "UpstreamResponse",
    "build_providers",
]
