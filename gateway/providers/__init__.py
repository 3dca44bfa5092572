"""Upstream providers: one module per upstream API, plus the registry that builds them."""

from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.azure import AzureProvider
from gateway.providers.mock import MockProvider
from gateway.providers.openai import OpenAIProvider
from gateway.providers.registry import PROVIDER_KINDS, build_providers, provider_key
from gateway.providers.upstream import Provider, UpstreamRequest, UpstreamResponse

__all__ = [
    "PROVIDER_KINDS",
    "AnthropicProvider",
    "AzureProvider",
    "MockProvider",
    "OpenAIProvider",
    "Provider",
    "UpstreamRequest",
    "UpstreamResponse",
    "build_providers",
    "provider_key",
]
