"""`build_routes`: the configured routes resolved - providers, limits, policies, backends.

Each `RouteSettings` becomes a `Route` (its targets in order, its timeouts over the gateway's
defaults, its ceilings, its `FailurePolicy`). Each target gets its backend's state from the
`StateStore`, asked once per backend (upstream + model): targets naming the same backend, in
one route or several, share it. A target on an upstream with deployments becomes a pool
(`gateway.routing.pools`): a member target per deployment, each on its own provider and its
own backend (`upstream/model@deployment`), wrapped to keep the deployment's figures. A
backend named with several `max_streams` gets the tightest (a target without one sets no
limit of its own).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from gateway.providers import Provider, provider_key
from gateway.routing.backoff import RetryPolicy
from gateway.routing.policy import FailurePolicy
from gateway.routing.pools import Deployment, DeploymentBackend, DeploymentObserver, Pool
from gateway.routing.router import Route, Target
from gateway.settings import GatewaySettings, RouteSettings, TargetSettings
from gateway.state import Backend, CircuitPolicy, StateStore

__all__ = ["build_routes"]

#: A backend: the upstream's name, its deployment's (None: a plain upstream), and the model
#: sent to it (None: the client's).
_Key = tuple[str, str | None, str | None]


def build_routes(
    settings: GatewaySettings,
    providers: Mapping[str, Provider],
    store: StateStore,
    observer: DeploymentObserver | None = None,
) -> list[Route]:
    """The routes of `settings`, in configuration order, over `providers` and `store`;
    `observer` hears of the calls to the pools' deployments."""
    policy = CircuitPolicy(settings.circuit.failures, settings.circuit.cooldown)
    backends: dict[_Key, Backend] = {}
    for key, limit in _backend_limits(settings).items():
        upstream, deployment, model = key
        name = f"{upstream}/{model or '*'}"
        backend = store.backend(
            name if deployment is None else f"{name}@{deployment}",
            max_streams=limit,
            circuit=policy,
        )
        if deployment is not None:
            weight = _weight(settings, upstream, deployment)
            figures = Deployment(upstream, deployment, model or "*", weight, observer)
            backend = DeploymentBackend(backend, figures)
        backends[key] = backend
    return [_route(config, settings, providers, backends) for config in settings.routes]


def _keys(settings: GatewaySettings, target: TargetSettings) -> list[_Key]:
    """The backends a target stands for: its upstream's, or each of its deployments'."""
    deployments = settings.upstreams[target.upstream].deployments
    if deployments is None:
        return [(target.upstream, None, target.model)]
    return [(target.upstream, d.name, d.model or target.model) for d in deployments]


def _weight(settings: GatewaySettings, upstream: str, name: str) -> float:
    deployments = settings.upstreams[upstream].deployments or ()
    return next(d.weight for d in deployments if d.name == name)


def _backend_limits(settings: GatewaySettings) -> dict[_Key, int | None]:
    """Each backend's `max_streams`: the tightest its targets set (None: unlimited)."""
    limits: dict[_Key, int | None] = {}
    for config in settings.routes:
        for target in config.targets:
            for key in _keys(settings, target):
                limit, given = limits.get(key), target.max_streams
                limits[key] = given if limit is None else min(limit, given or limit)
    return limits


def _target(
    target: TargetSettings,
    settings: GatewaySettings,
    providers: Mapping[str, Provider],
    backends: Mapping[_Key, Backend],
) -> Target:
    """A configured target: one backend's, or a pool of its deployments' member targets."""
    upstream = settings.upstreams[target.upstream]
    members = [
        Target(
            provider=providers[provider_key(name, deployment)],
            model=model,
            backend=backends[name, deployment, model],
            timeouts=target.timeouts.overrides(),
            prefill=target.prefill,
            stream_usage=upstream.stream_usage,
            default_max_tokens=target.default_max_tokens,
        )
        for name, deployment, model in _keys(settings, target)
    ]
    if upstream.deployments is None:
        return members[0]
    figures = [b.deployment for m in members if isinstance(b := m.backend, DeploymentBackend)]
    pool = Pool(members, figures, upstream.strategy)
    return dataclasses.replace(members[0], model=target.model, pool=pool)


def _route(
    config: RouteSettings,
    settings: GatewaySettings,
    providers: Mapping[str, Provider],
    backends: Mapping[_Key, Backend],
) -> Route:
    retry = settings.retry.overrides()
    return Route(
        name=config.model,
        targets=tuple(_target(target, settings, providers, backends) for target in config.targets),
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
