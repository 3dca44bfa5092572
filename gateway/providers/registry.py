"""The provider registry: which module speaks to an upstream of each `kind`.

A new provider is one module and one line in `PROVIDER_KINDS`; nothing else branches on kinds.

An upstream with deployments (`upstreams.<name>.deployments`, or several keys) gets one
provider per deployment - its own URL, key and connection pool - keyed by
`provider_key(upstream, deployment)`; each is named for its upstream (`Provider.name`), so
what is counted per upstream still is. A plain upstream's provider is keyed by its name.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.azure import AzureProvider
from gateway.providers.mock import MockProvider
from gateway.providers.openai import OpenAIProvider
from gateway.providers.upstream import Provider
from gateway.redaction import Redactor
from gateway.settings import GatewaySettings, LimitSettings, UpstreamSettings

__all__ = ["PROVIDER_KINDS", "build_providers", "provider_key"]

#: (upstream name, its settings, the limits, the redactor of every secret of the gateway)
ProviderFactory = Callable[[str, UpstreamSettings, LimitSettings, Redactor], Provider]

PROVIDER_KINDS: dict[str, ProviderFactory] = {
    "openai": OpenAIProvider,
    "azure": AzureProvider,
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
    providers: dict[str, Provider] = {}
    for name, upstream in settings.upstreams.items():
        make = PROVIDER_KINDS[upstream.kind]
        if upstream.deployments is None:
            providers[name] = make(name, upstream, settings.limits, redactor)
            continue
        for deployment in upstream.deployments:
            # Its own URL and key (resolved by the settings) over the upstream's other settings.
            own = upstream.model_copy(
                update={
                    "base_url": deployment.base_url,
                    "api_key": deployment.api_key,
                    "deployments": None,
                }
            )
            key = provider_key(name, deployment.name)
            providers[key] = make(name, own, settings.limits, redactor)
    return providers


def provider_key(upstream: str, deployment: str | None) -> str:
    """The key of a deployment's provider in `build_providers`' mapping (None: the plain
    upstream's)."""
    return upstream if deployment is None else f"{upstream}@{deployment}"
