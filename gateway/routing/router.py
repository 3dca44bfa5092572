"""The router: a client's model name -> the route that serves it, with its chain and limits.

A `Route` is the resolved, immutable view of a `RouteSettings`: the ordered chain of targets
(an upstream's provider, the model name to send it, the target's own limits and capabilities),
the route's default `Timeouts`, the ceilings per-request overrides are clamped to, and its
`FailurePolicy` (retries, and the error codes it fails over on or passes on). A route's
`model` is a client-facing name or a glob pattern (`fnmatch` rules, case-sensitive): an exact
name wins, then the patterns in configuration order. The route's name - the configured name or
pattern, never what the client typed - is what metrics and logs use as its label.

A route serves the APIs its targets' providers speak, and those it translates to one they
speak (`gateway.translation`: Chat Completions, Messages and Responses, each to the others):
`resolve(model, api)` refuses (400, in the caller's dialect) a request sent to an API that some
target can neither speak nor be translated to. A target is called in the client's own API when
it speaks it (relayed byte-exact), else in the first API it speaks that a translation serves
(`Target.api_for`).

Targets that name the same upstream and model share their state (a `gateway.state.Backend`:
requests in flight, health) across routes: it is one backend however many names route to it.
A target on an upstream with deployments is a pool (`Target.pool`, `gateway.routing.pools`):
one member target per deployment, each its own provider and backend; `Target.members()` is
what a request tries, in its strategy's order.
`Router` takes the resolved routes; `gateway.routing.routes.build_routes` makes them from the
settings, the providers and the state store.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gateway.apis import Api
from gateway.errors import InvalidRequest, UnknownModel
from gateway.providers import Provider
from gateway.routing.policy import FailurePolicy
from gateway.routing.pools import DeploymentBackend, Pool
from gateway.state import Backend
from gateway.streaming import Timeouts
from gateway.translation import translation_for

__all__ = ["Route", "Router", "Target", "is_pattern"]

_GLOB_CHARS = frozenset("*?[")


def is_pattern(model: str) -> bool:
    """Whether a route's `model` is a glob pattern rather than one name."""
    return not _GLOB_CHARS.isdisjoint(model)


@dataclass(frozen=True, slots=True)
class Target:
    """One place a route can send a request, and what that place allows."""

    provider: Provider
    model: str | None  # None: the client's model name, unchanged
    #: The backend's shared state: its slots and circuit (one per upstream + model).
    backend: Backend = field(compare=False)
    #: This target's own `connect` / `first_byte` / `first_token` / `idle` limits, over the
    #: route's.
    timeouts: Mapping[str, float] = field(default_factory=dict)
    prefill: bool = False  # continues a final assistant message
    #: Asked for a stream's usage its client did not ask for, where the API has that switch.
    stream_usage: bool = True
    #: The output limit sent when a translated request gave none and the target's API needs
    #: one (Anthropic's `max_tokens`).
    default_max_tokens: int = 4096
    #: The deployments of a pooled upstream, one member target each (whose own `pool` is
    #: None); this target's `provider` and `backend` are then its first member's.
    pool: Pool[Target] | None = field(default=None, compare=False)

    def members(self) -> list[Target]:
        """The targets a request tries for this one: itself, or its pool's members in the
        order its strategy gives this request."""
        return [self] if self.pool is None else self.pool.order()

    def deployments(self) -> tuple[Target, ...]:
        """Every target this one stands for: itself, or its pool's members (in config order)."""
        return (self,) if self.pool is None else self.pool.members

    @property
    def name(self) -> str:
        """`upstream/model` as configured (`*`: the client's model name); a closed set."""
        return f"{self.provider.name}/{self.model or '*'}"

    def upstream_model(self, requested: str) -> str:
        return self.model or requested

    def api_for(self, api: Api) -> Api | None:
        """The API a request of `api` is sent to this target in: `api` itself when its
        provider speaks it, else the first API it speaks that `api` translates to; None:
        neither."""
        provider = self.provider
        if provider.speaks(api):
            return api
        return next((spoken for spoken in provider.apis if translation_for(api, spoken)), None)


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # the configured model name or pattern; a closed set, safe as a label
    targets: tuple[Target, ...]
    timeouts: Timeouts
    ceilings: Timeouts
    policy: FailurePolicy = field(default_factory=FailurePolicy)
    #: Most continuations of one stream after its first byte (targets with `prefill` only).
    continuations: int = 0
    #: A translated request leaves out what its target cannot honour instead of a 400.
    drop_params: bool = False
    #: Its streams are resumable (`routes[].resumable`): the server keeps their events.
    resumable: bool = False

    def timeouts_for(
        self, overrides: Mapping[str, float], target: Target | None = None
    ) -> Timeouts:
        """The limits of a call: the route's, then `target`'s own, then the request's
        `overrides`, clamped to the route's ceilings."""
        limits = self.timeouts
        if target is not None:
            limits = limits.with_overrides(**target.timeouts)
        return limits.with_overrides(**overrides).clamped(self.ceilings)


class Router:
    """Resolves model names to routes; built once from the resolved routes."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._exact: dict[str, Route] = {}
        self._patterns: list[Route] = []
        for route in routes:
            if is_pattern(route.name):
                self._patterns.append(route)
            else:
                self._exact[route.name] = route

    @property
    def routes(self) -> list[Route]:
        """Every route: exact names first, then patterns, each in configuration order."""
        return [*self._exact.values(), *self._patterns]

    def resolve(self, model: str, api: Api | None = None) -> Route:
        """The route of `model`; with `api`, only if every target speaks it."""
        route = self._exact.get(model)
        if route is None:
            route = next((r for r in self._patterns if fnmatch.fnmatchcase(model, r.name)), None)
        if route is None:
            raise UnknownModel(f"model {_quote(model)} is not routed by this gateway")
        if api is not None:
            _check_api(model, route, api)
        return route

    def models(self, api: Api | None = None) -> list[str]:
        """The routable model names, in configuration order (patterns are not names); with
        `api`, only those whose every target speaks it."""
        if api is None:
            return list(self._exact)
        return [
            name
            for name, route in self._exact.items()
            if all(target.api_for(api) is not None for target in route.targets)
        ]

    def patterns(self) -> list[str]:
        """The glob patterns routed, in configuration order."""
        return [route.name for route in self._patterns]

    def backends(self) -> list[Backend]:
        """Every target's backend (each deployment's, for a pool), once each (targets naming
        one backend share it)."""
        unique = {
            id(member.backend): member.backend
            for route in self.routes
            for target in route.targets
            for member in target.deployments()
        }
        return list(unique.values())

    def deployment_backends(self) -> list[DeploymentBackend]:
        """The backends of the pools' deployments, once each."""
        return [b for b in self.backends() if isinstance(b, DeploymentBackend)]


def _check_api(model: str, route: Route, api: Api) -> None:
    strangers = [t.provider for t in route.targets if t.api_for(api) is None]
    if not strangers:
        return
    spoken = strangers[0].apis
    where = " or ".join(f"the {other.family} API ({other.endpoint})" for other in spoken)
    raise InvalidRequest(
        f"model {_quote(model)} is not served on {api.endpoint}: its upstream speaks "
        f"{where}, and this gateway does not translate {api.endpoint} to it"
    )


def _quote(model: str, limit: int = 64) -> str:
    """A client-supplied name made safe to echo in a message (JSON-encoded later)."""
    shown = "".join(ch if ch.isprintable() else "?" for ch in model[:limit])
    return repr(shown + ("..." if len(model) > limit else ""))
