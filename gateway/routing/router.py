"""The router: a client's model name -> the route that serves it, with its limits.

A `Route` is the resolved, immutable view of a `RouteSettings`: the targets (provider + model
name to send), the route's default `Timeouts` and the ceilings per-request overrides are
clamped to. The chain of targets is the shape failover will walk; today a route has one.

A route serves the API its targets' providers speak: `resolve(model, dialect)` refuses (400, in
the caller's dialect) a request sent to one API's endpoint for a model whose upstream speaks
another - the gateway relays, it does not translate between APIs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.errors import InvalidRequest, UnknownModel
from gateway.providers import Provider
from gateway.settings import GatewaySettings
from gateway.streaming import Dialect, Timeouts

__all__ = ["Route", "Router", "Target"]


@dataclass(frozen=True, slots=True)
class Target:
    """One place a route can send a request."""

    provider: Provider
    model: str | None  # None: the client's model name, unchanged

    def upstream_model(self, requested: str) -> str:
        return self.model or requested


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # the client-facing model name; a closed set (from config), safe as a label
    targets: tuple[Target, ...]
    timeouts: Timeouts
    ceilings: Timeouts

    def timeouts_for(self, overrides: Mapping[str, float]) -> Timeouts:
        """The route's limits with a request's overrides applied, clamped to the ceilings."""
        return self.timeouts.with_overrides(**overrides).clamped(self.ceilings)


class Router:
    """Resolves model names to routes; built once from settings and the providers."""

    def __init__(self, settings: GatewaySettings, providers: Mapping[str, Provider]) -> None:
        defaults = settings.default_timeouts()
        ceilings = settings.timeout_ceilings()
        self._routes: dict[str, Route] = {}
        for route in settings.routes:
            self._routes[route.model] = Route(
                name=route.model,
                targets=tuple(
                    Target(provider=providers[target.upstream], model=target.model)
                    for target in route.targets
                ),
                timeouts=route.timeouts.over(defaults),
                ceilings=route.max_timeouts.over(ceilings),
            )

    def resolve(self, model: str, dialect: Dialect | None = None) -> Route:
        """The route of `model`; with `dialect`, only if every target speaks it."""
        route = self._routes.get(model)
        if route is None:
            raise UnknownModel(f"model {_quote(model)} is not routed by this gateway")
        if dialect is not None:
            _check_dialect(model, route, dialect)
        return route

    def models(self) -> list[str]:
        """The routable model names, in configuration order."""
        return list(self._routes)


def _check_dialect(model: str, route: Route, dialect: Dialect) -> None:
    strangers = [t.provider for t in route.targets if not t.provider.speaks(dialect.name)]
    if not strangers:
        return
    spoken = strangers[0].dialects.values()
    where = " or ".join(f"the {other.name} API ({other.endpoint})" for other in spoken)
    raise InvalidRequest(
        f"model {_quote(model)} is not served on {dialect.endpoint}: its upstream speaks "
        f"{where}, and this gateway does not translate between APIs"
    )


def _quote(model: str, limit: int = 64) -> str:
    """A client-supplied name made safe to echo in a message (JSON-encoded later)."""
    shown = "".join(ch if ch.isprintable() else "?" for ch in model[:limit])
    return repr(shown + ("..." if len(model) > limit else ""))
