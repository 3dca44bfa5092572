"""The provider registry: which module speaks to an upstream of each `kind`.

A new provider is one module and one line in `PROVIDER_KINDS`; nothing else branches on kinds.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.mock import MockProvider
from gateway.providers.openai import OpenAIProvider
from gateway.providers.upstream import Provider
from gateway.redaction import Redactor
from gateway.settings import GatewaySettings, LimitSettings, UpstreamSettings

__all__ = ["PROVIDER_KINDS", "build_providers"]

#: (upstream name, its settings, the limits, the redactor of every secret of the gateway)
ProviderFactory = Callable[[str, UpstreamSettings, LimitSettings, Redactor], Provider]

PROVIDER_KINDS: dict[str, ProviderFactory] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "mock": MockProvider,
}


def build_providers(
    settings: GatewaySettings, redactor: Redactor | None = None
) -> dict[str, Provider]:
    """One provider per configured upstream, keyed by the upstream's name; `redactor` is the
    app's (default: one of `settings.secret_values()`)."""
    if redactor is None:
        redactor = Redactor(settings.secret_values())
    return {
        name: PROVIDER_KINDS[upstream.kind](name, upstream, settings.limits, redactor)
        for name, upstream in settings.upstreams.items()
    }
