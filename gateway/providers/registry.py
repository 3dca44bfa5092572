"""The provider registry: which module speaks to an upstream of each `kind`.

A new provider is one module and one line in `PROVIDER_KINDS`; nothing else branches on kinds.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.mock import MockProvider
from gateway.providers.openai import OpenAIProvider
from gateway.providers.upstream import Provider
from gateway.settings import GatewaySettings, LimitSettings, UpstreamSettings

__all__ = ["PROVIDER_KINDS", "build_providers"]

ProviderFactory = Callable[[str, UpstreamSettings, LimitSettings], Provider]

PROVIDER_KINDS: dict[str, ProviderFactory] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "mock": MockProvider,
}


def build_providers(settings: GatewaySettings) -> dict[str, Provider]:
    """One provider per configured upstream, keyed by the upstream's name."""
    return {
        name: PROVIDER_KINDS[upstream.kind](name, upstream, settings.limits)
        for name, upstream in settings.upstreams.items()
    }
