"""`gateway check-config FILE [--json]`: validate a config file and show what it configures.

The file is loaded exactly as `gateway --config FILE` would load it - with the environment and
any flags - so keys provided by the environment count. A valid file prints a summary (listen
address, workers, metrics, gateway keys, each upstream, and each route with its effective
limits: global defaults merged with the route's overrides, clamped to its ceilings) and exits 0;
an invalid one prints the problems, each naming the field and its source, and exits 2.

Invariant: the summary is built without reading any secret's value. A key is only ever shown
as `set (env OPENAI_API_KEY)`, `set (file /run/secrets/x)` or `not set`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, TextIO

from gateway.routing import RetryPolicy, is_pattern
from gateway.settings import (
    ConfigError,
    Flag,
    GatewaySettings,
    LoadedSettings,
    RouteSettings,
    SettingsSources,
    TargetSettings,
    UpstreamSettings,
    load_settings_with_sources,
)
from gateway.streaming import Timeouts

__all__ = ["check_config", "render_summary", "summarize"]


def check_config(
    path: str, flags: Sequence[Flag], *, as_json: bool, out: TextIO, err: TextIO
) -> int:
    """Validate `path`; print the summary (or the problems) and return the exit status."""
    try:
        loaded = load_settings_with_sources(path, flags=flags)
    except ConfigError as exc:
        if as_json:
            problems = [asdict(problem) for problem in exc.problems]
            report = {"valid": False, "error": exc.message, "problems": problems}
            out.write(json.dumps(report, indent=2) + "\n")
        else:
            err.write(f"gateway: {exc}\n")
        return 2
    summary = summarize(loaded, path)
    out.write(json.dumps(summary, indent=2) + "\n" if as_json else render_summary(summary))
    return 0


def summarize(loaded: LoadedSettings, path: str) -> dict[str, Any]:
    """The effective configuration as JSON-ready data, secrets reduced to where they are from."""
    settings, sources = loaded.settings, loaded.sources
    metrics = settings.metrics
    return {
        "valid": True,
        "config_file": path,
        "listen": _address(settings.listen.host, settings.listen.port),
        "workers": settings.workers,
        "heartbeat": settings.heartbeat,
        "metrics": {
            "enabled": metrics.enabled,
            "listen": _address(metrics.listen.host, metrics.listen.port)
            if metrics.listen
            else None,
            # Effective (auto resolved), and whether it was set or left to auto.
            "require_key": metrics.key_required(keys_configured=settings.auth.required),
            "require_key_auto": metrics.require_key is None,
        },
        "auth": {
            "keys": len(settings.auth.keys),
            "source": _keys_source(settings, sources),
            "clients": [client.name for client in settings.auth.clients],
        },
        "upstreams": {
            name: _upstream(name, upstream, sources, settings.limits.max_streams)
            for name, upstream in settings.upstreams.items()
        },
        "routes": [_route(route, settings) for route in settings.routes],
    }


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _upstream(
    name: str, upstream: UpstreamSettings, sources: SettingsSources, max_streams: int
) -> dict[str, Any]:
    return {
        "kind": upstream.kind,
        "base_url": str(upstream.base_url) if upstream.base_url else None,
        # Effective (unset: `limits.max_streams`), and whether it was left unset.
        "max_connections": upstream.max_connections or max_streams,
        "max_connections_auto": upstream.max_connections is None,
        "key": {
            "set": upstream.api_key is not None,
            "source": _key_source(name, upstream, sources),
        },
        # A pool: each deployment's name, URL, weight and whether its key is set (never the key).
        "deployments": [
            {
                "name": deployment.name,
                "base_url": str(deployment.base_url) if deployment.base_url else None,
                "weight": deployment.weight,
                "key_set": deployment.api_key is not None,
            }
            for deployment in upstream.deployments or ()
        ],
        "strategy": upstream.strategy if upstream.deployments else None,
    }


def _key_source(name: str, upstream: UpstreamSettings, sources: SettingsSources) -> str | None:
    if upstream.api_key is None:
        return None
    if upstream.api_key_file is not None:
        return f"file {upstream.api_key_file}"
    if upstream.api_key_env is not None:
        return f"env {upstream.api_key_env}"
    return _origin(sources, ("upstreams", name, "api_key"))


def _keys_source(settings: GatewaySettings, sources: SettingsSources) -> str | None:
    if not settings.auth.keys:
        return None
    if settings.auth.keys_file is not None:
        return f"file {settings.auth.keys_file}"
    return _origin(sources, ("auth", "keys"))


def _auth_line(auth: dict[str, Any]) -> str:
    parts = [f"{auth['keys']} gateway key(s), {auth['source']}"] if auth["keys"] else []
    if auth["clients"]:
        parts.append("named clients " + ", ".join(auth["clients"]))
    return "; ".join(parts) or "off"


def _origin(sources: SettingsSources, loc: tuple[str, ...]) -> str:
    variables = sources.environment_variables(loc)
    return f"env {', '.join(variables)}" if variables else sources.origin(loc)


def _route(route: RouteSettings, settings: GatewaySettings) -> dict[str, Any]:
    ceilings = route.max_timeouts.over(settings.timeout_ceilings())
    # What a request without x-gateway-*-timeout headers gets (as `Route.timeouts_for({})`).
    timeouts = route.timeouts.over(settings.default_timeouts()).clamped(ceilings)
    return {
        "model": route.model,
        "targets": [_target(target, route) for target in route.targets],
        "timeouts": asdict(timeouts),
        "max_timeouts": asdict(ceilings),
        "retry": {
            **asdict(RetryPolicy()),
            **settings.retry.overrides(),
            **route.retry.overrides(),
        },
        "failover_on": list(route.failover_on),
        "propagate": list(route.propagate),
        # Only targets that declare prefill continue streams.
        "continuations": route.continuations if any(t.prefill for t in route.targets) else 0,
    }


def _target(target: TargetSettings, route: RouteSettings) -> dict[str, Any]:
    """A target as configured, its options only when set. Its model is the client's when it
    names none: the route's name, or, for a pattern, whatever matched (`null`)."""
    model = target.model or (None if is_pattern(route.model) else route.model)
    shown: dict[str, Any] = {"upstream": target.upstream, "model": model}
    if target.timeouts.overrides():
        shown["timeouts"] = target.timeouts.overrides()
    if target.prefill:
        shown["prefill"] = True
    if target.max_streams is not None:
        shown["max_streams"] = target.max_streams
    return shown


def render_summary(summary: dict[str, Any]) -> str:
    """The summary for a human reader."""
    metrics, auth = summary["metrics"], summary["auth"]
    workers = summary["workers"]
    heartbeat = summary["heartbeat"]
    lines = [
        f"{summary['config_file']}: valid",
        "",
        f"listen     {summary['listen']}, {workers} worker{'s' if workers > 1 else ''}, "
        + (f"heartbeat every {heartbeat:g} s" if heartbeat else "no heartbeat"),
        f"metrics    {_metrics_line(metrics)}",
        "auth       " + _auth_line(auth),
        "",
        "upstreams",
    ]
    rows = [
        (
            name,
            upstream["kind"],
            _where_text(upstream),
            _key_text(upstream["key"], upstream["deployments"]),
        )
        for name, upstream in summary["upstreams"].items()
    ]
    widths = [max((len(row[column]) for row in rows), default=0) for column in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  " + "  ".join([*cells, row[3]]))
    lines += ["", "routes (limits in seconds; header ceilings in brackets)"]
    for route in summary["routes"]:
        targets = ", ".join(_target_text(target) for target in route["targets"])
        lines.append(f"  {route['model']} -> {targets}")
        lines.append(f"      {_limits(route['timeouts'], route['max_timeouts'])}")
        lines.append(f"      {_retry_text(route)}")
    return "\n".join(lines) + "\n"


def _target_text(target: dict[str, Any]) -> str:
    notes = [f"model {target['model']}" if target["model"] else "the client's model"]
    notes += [f"{name} {value:g}" for name, value in target.get("timeouts", {}).items()]
    if target.get("prefill"):
        notes.append("prefill")
    if "max_streams" in target:
        notes.append(f"max_streams {target['max_streams']}")
    return f"{target['upstream']} ({', '.join(notes)})"


def _retry_text(route: dict[str, Any]) -> str:
    retry = route["retry"]
    text = (
        f"retry: {retry['attempts']:g} call(s) per target, backoff "
        f"{retry['backoff_initial']:g}-{retry['backoff_max']:g} s, hints up to "
        f"{retry['retry_after_max']:g} s"
    )
    for name in ("failover_on", "propagate"):
        if route[name]:
            text += f"; {name} {', '.join(route[name])}"
    if route["continuations"]:
        text += f"; up to {route['continuations']} continuation(s)"
    return text


def _where_text(upstream: dict[str, Any]) -> str:
    pool = upstream["deployments"]
    if pool:
        return f"{len(pool)} deployments ({upstream['strategy']})"
    return str(upstream["base_url"] or "(built-in)")


def _key_text(key: dict[str, Any], pool: list[dict[str, Any]]) -> str:
    if pool:
        keyed = sum(deployment["key_set"] for deployment in pool)
        return f"keys set for {keyed} of {len(pool)} deployments"
    return f"key set ({key['source']})" if key["set"] else "key not set"


def _metrics_line(metrics: dict[str, Any]) -> str:
    if not metrics["enabled"]:
        return "off"
    where = f"on {metrics['listen']}" if metrics["listen"] else "on the main listener"
    key = ", gateway key required" if metrics["require_key"] else ", no key needed"
    if metrics["require_key_auto"]:
        key += " (auto)"
    return f"GET /metrics {where}{key}"


def _limits(timeouts: dict[str, float | None], ceilings: dict[str, float | None]) -> str:
    def seconds(value: float | None) -> str:
        return "none" if value is None else f"{value:g}"

    # A limit neither set nor capped (`first_token` by default) is left out: there is none.
    return ", ".join(
        f"{name} {seconds(timeouts[name])} [{seconds(ceilings[name])}]"
        for name in asdict(Timeouts())
        if timeouts[name] is not None or ceilings[name] is not None
    )
