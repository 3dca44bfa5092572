"""`build_routes`: the configured routes resolved - providers, limits, policies, backends.

Each `RouteSettings` becomes a `Route` (its targets in order, its timeouts over the gateway's
defaults, its ceilings, its `FailurePolicy`). Each target gets its backend's state from the
`StateStore`, asked once per backend (upstream + model): targets naming the same backend, in
one route or several, share it. A backend named with several `max_streams` gets the tightest
(a target without one sets no limit of its own).
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.providers import Provider
from gateway.routing.backoff import RetryPolicy
from gateway.routing.policy import FailurePolicy
from gateway.routing.router import Route, Target
from gateway.settings import GatewaySettings, RouteSettings
from gateway.state import Backend, CircuitPolicy, StateStore

__all__ = ["build_routes"]

#: A backend: the upstream's name, and the model sent to it (None: the client's).
_Key = tuple[str, str | None]


def build_routes(
    settings: GatewaySettings, providers: Mapping[str, Provider], store: StateStore
) -> list[Route]:
    """The routes of `settings`, in configuration order, over `providers` and `store`."""
    policy = CircuitPolicy(settings.circuit.failures, settings.circuit.cooldown)
    backends = {
        key: store.backend(f"{key[0]}/{key[1] or '*'}", max_streams=limit, circuit=policy)
        for key, limit in _backend_limits(settings).items()
    }
    return [_route(config, settings, providers, backends) for config in settings.routes]


def _backend_limits(settings: GatewaySettings) -> dict[_Key, int | None]:
    """Each backend's `max_streams`: the tightest its targets set (None: unlimited)."""
    limits: dict[_Key, int | None] = {}
    for config in settings.routes:
        for target in config.targets:
            key = (target.upstream, target.model)
            limit, given = limits.get(key), target.max_streams
            limits[key] = given if limit is None else min(limit, given or limit)
    return limits


def _route(
    config: RouteSettings,
    settings: GatewaySettings,
    providers: Mapping[str, Provider],
    backends: Mapping[_Key, Backend],
) -> Route:
    retry = settings.retry.overrides()
    return Route(
        name=config.model,
        targets=tuple(
            Target(
                provider=providers[target.upstream],
                model=target.model,
                backend=backends[target.upstream, target.model],
                timeouts=target.timeouts.overrides(),
                prefill=target.prefill,
                stream_usage=settings.upstreams[target.upstream].stream_usage,
                default_max_tokens=target.default_max_tokens,
            )
            for target in config.targets
        ),
        timeouts=config.timeouts.over(settings.default_timeouts()),
        ceilings=config.max_timeouts.over(settings.timeout_ceilings()),
        policy=FailurePolicy(
            retry=RetryPolicy(**{**retry, **config.retry.overrides()}),
            failover_on=frozenset(config.failover_on),
            propagate=frozenset(config.propagate),
        ),
        continuations=config.continuations,
        drop_params=config.drop_params,
        resumable=config.resumable,
    )
