"""`GatewaySettings`: the gateway's whole configuration, and `load_settings`, which reads it.

Precedence (lowest first): defaults < YAML config file (`--config` or `GATEWAY_CONFIG`) <
environment (`GATEWAY_` prefix, `__` for nesting, e.g. `GATEWAY_TIMEOUTS__IDLE=30`) <
command-line flags (passed in by `gateway.cli`). Unknown keys are rejected. `load_settings`
reads the sources itself (`gateway.settings.sources`) so that an invalid configuration raises a
`ConfigError` naming each bad field and where its value came from. The sections live in
`gateway.settings.sections` and are re-exported here. These three modules are the only readers
of the environment and of config and secret files.

Secrets (provider keys, gateway keys, `state.redis_url`) are `SecretStr` and never come from the
committed YAML file: a literal `api_key`, `auth.keys` or `state.redis_url` there is rejected.
They come from the environment (`GATEWAY_UPSTREAMS__<NAME>__API_KEY`, `GATEWAY_AUTH__KEYS='["k1"]'`,
`GATEWAY_STATE__REDIS_URL`, or the variable an
upstream names in `api_key_env`) or from files the config names (`api_key_file`,
`auth.keys_file`: Docker/k8s secrets). After validation `api_key` and `auth.keys` hold the
resolved secrets whatever their source. No error message ever contains a secret.

With no configuration at all the gateway serves the built-in mock under `MOCK_MODELS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import (
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from gateway.settings.sections import (
    AuthSettings,
    CircuitSettings,
    CorsSettings,
    DeploymentSettings,
    LimitSettings,
    ListenSettings,
    LogSettings,
    MetricsSettings,
    MockSettings,
    PhaseTimeoutSettings,
    RetrySettings,
    RouteSettings,
    ServerSettings,
    StateSettings,
    TargetSettings,
    TimeoutSettings,
    TracingSettings,
    UpstreamSettings,
)
from gateway.settings.sources import (
    ConfigError,
    ConfigProblem,
    Flag,
    Layer,
    Loc,
    SettingsSources,
    file_layer,
    flags_layer,
    invalid,
    literal_secrets,
    read_environment,
)
from gateway.streaming import Timeouts

__all__ = [
    "DEFAULT_CEILINGS",
    "ENV_NESTING",
    "ENV_PREFIX",
    "FLAGS",
    "MOCK_MODELS",
    "SECRET_FIELDS",
    "AuthSettings",
    "CircuitSettings",
    "ConfigError",
    "ConfigProblem",
    "CorsSettings",
    "DeploymentSettings",
    "Flag",
    "GatewaySettings",
    "LimitSettings",
    "ListenSettings",
    "LoadedSettings",
    "LogSettings",
    "MetricsSettings",
    "MockSettings",
    "PhaseTimeoutSettings",
    "RetrySettings",
    "RouteSettings",
    "ServerSettings",
    "SettingsSources",
    "StateSettings",
    "TargetSettings",
    "TimeoutSettings",
    "TracingSettings",
    "UpstreamSettings",
    "load_settings",
    "load_settings_with_sources",
]

#: The model names the built-in mock answers to; each `mock-*` misbehaves in one way.
MOCK_MODELS: tuple[str, ...] = (
    "mock",
    "mock-slow",
    "mock-no-done",
    "mock-cut",
    "mock-stall",
    "mock-silent",
    "mock-garbage",
    "mock-reset",
    "mock-huge",
    "mock-429",
    "mock-500",
    "mock-401",
    "mock-400",
)


#: How far per-request headers may raise each limit unless the config says otherwise.
DEFAULT_CEILINGS = Timeouts(connect=30, first_byte=600, idle=600, total=3600)

ENV_PREFIX = "GATEWAY_"
ENV_NESTING = "__"

#: The command-line flags and the field each sets; they win over every other source.
FLAGS: Mapping[str, str] = {
    "--host": "listen.host",
    "--port": "listen.port",
    "--workers": "workers",
    "--heartbeat": "heartbeat",
    "--metrics-host": "metrics.listen.host",
    "--metrics-port": "metrics.listen.port",
    "--log-level": "log.level",
    "--log-format": "log.format",
}

#: Secret fields (`*`: any upstream name, `[]`: any list index), and where such a secret may
#: come from instead of the config file.
SECRET_FIELDS: Mapping[Loc, str] = {
    ("upstreams", "*", "api_key"): (
        "name the variable holding it in api_key_env, or a file in api_key_file, or set "
        "GATEWAY_UPSTREAMS__<NAME>__API_KEY"
    ),
    ("upstreams", "*", "api_keys"): (
        "name the variables holding them in api_keys_env, or a file in api_keys_file, or set "
        "GATEWAY_UPSTREAMS__<NAME>__API_KEYS (a JSON list)"
    ),
    ("upstreams", "*", "deployments", "[]", "api_key"): (
        "name the variable holding it in the deployment's api_key_env, or a file in its "
        "api_key_file"
    ),
    ("auth", "keys"): "name a file in auth.keys_file, or set GATEWAY_AUTH__KEYS (a JSON list)",
    ("state", "redis_url"): "set GATEWAY_STATE__REDIS_URL (it may hold Redis's password)",
    ("tracing", "headers"): "set GATEWAY_TRACING__HEADERS (a JSON object)",
}


def _seconds(limits: Timeouts) -> str:
    values = ((field.name, getattr(limits, field.name)) for field in fields(limits))
    return ", ".join(f"{name} {_shown_limit(value)}" for name, value in values)


def _shown_limit(value: float | None) -> str:
    return "unset" if value is None else f"{value:g}"


def _default_upstreams() -> dict[str, UpstreamSettings]:
    return {"mock": UpstreamSettings(kind="mock")}


def _default_routes() -> list[RouteSettings]:
    # One attempt each: every mock-* model shows its fault as it is, at once.
    once = RetrySettings(attempts=1)
    return [
        RouteSettings(model=name, targets=[TargetSettings(upstream="mock")], retry=once)
        for name in MOCK_MODELS
    ]


class GatewaySettings(BaseSettings):
    """Everything the gateway is configured with."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTING,
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
    )

    listen: ListenSettings = Field(ListenSettings(), description="The main listener.")
    server: ServerSettings = Field(
        ServerSettings(), description="How the gateway presents itself in responses."
    )
    upstreams: dict[str, UpstreamSettings] = Field(
        default_factory=_default_upstreams,
        description="Upstream APIs by name (default: one `mock` of kind `mock`).",
    )
    routes: list[RouteSettings] = Field(
        default_factory=_default_routes,
        description="Client model names and where they go (default: the mock's models).",
    )
    timeouts: TimeoutSettings = Field(
        TimeoutSettings(),
        description=f"Limits for every route, seconds (unset: {_seconds(Timeouts())}).",
    )
    max_timeouts: TimeoutSettings = Field(
        TimeoutSettings(),
        description="Ceilings for per-request `x-gateway-*-timeout` headers, seconds "
        f"(unset: {_seconds(DEFAULT_CEILINGS)}).",
    )
    retry: RetrySettings = Field(
        RetrySettings(),
        description="Retries of the same target before the first byte, for every route "
        "(unset: attempts 3, backoff_initial 0.5, backoff_max 8, retry_after_max 20).",
    )
    circuit: CircuitSettings = Field(
        CircuitSettings(),
        description="Circuit breaking per target (state per process, or shared with "
        "`state.redis_url`).",
    )
    state: StateSettings = Field(
        StateSettings(),
        description="What the gateway remembers of stored responses, and whether the keys' "
        "limits, circuits and response owners are shared through Redis.",
    )
    heartbeat: PositiveFloat | None = Field(
        15.0, description="Seconds without a write before a `: ping` comment (null: never)."
    )
    limits: LimitSettings = Field(
        LimitSettings(),
        description="What a client request may take: sizes (bytes), deadlines (seconds), "
        "requests in flight.",
    )
    log: LogSettings = Field(LogSettings(), description="Logging (structlog).")
    metrics: MetricsSettings = Field(MetricsSettings(), description="Prometheus metrics.")
    tracing: TracingSettings = Field(
        TracingSettings(), description="OpenTelemetry traces (OTLP/HTTP); off by default."
    )
    auth: AuthSettings = Field(AuthSettings(), description="Gateway keys clients present.")
    cors: CorsSettings = Field(
        CorsSettings(), description="Browsers on other origins (CORS); none by default."
    )
    workers: PositiveInt = Field(
        1, description="Worker processes sharing the listener (metrics aggregated across them)."
    )
    drain_grace: NonNegativeFloat = Field(
        20.0,
        description="Seconds in-flight requests may finish after SIGTERM before their streams "
        "end with `server_shutdown`; keep it below the orchestrator's grace period.",
    )

    @model_validator(mode="after")
    def _check_references(self) -> Self:
        seen: set[str] = set()
        for index, route in enumerate(self.routes):
            if route.model in seen:
                raise invalid(
                    ("routes", index, "model"),
                    f"routes[{index}].model {route.model!r} is routed twice",
                )
            seen.add(route.model)
            for number, target in enumerate(route.targets):
                if target.upstream not in self.upstreams:
                    raise invalid(
                        ("routes", index, "targets", number, "upstream"),
                        f"routes[{index}] ({route.model!r}) names upstream "
                        f"{target.upstream!r}, which is not among upstreams: "
                        f"{sorted(self.upstreams)}",
                    )
        return self

    @model_validator(mode="after")
    def _check_metrics(self) -> Self:
        metrics, main = self.metrics, self.listen
        if metrics.require_key and not self.auth.required:
            raise invalid(
                ("metrics", "require_key"), "metrics.require_key is set, but no gateway key"
            )
        if metrics.enabled and metrics.listen and metrics.listen.port == main.port != 0:
            hosts = {metrics.listen.host, main.host}
            if len(hosts) == 1 or hosts & {"0.0.0.0", "::", ""}:
                raise invalid(("metrics", "listen"), "metrics.listen is the address of listen")
        return self

    def default_timeouts(self) -> Timeouts:
        return self.timeouts.over(Timeouts())

    def secret_values(self) -> list[str]:
        """Every secret the gateway holds, in clear: the upstreams' keys and the gateway keys
        given in clear (from the environment or `keys_file`; a `sha256:` digest is not one).
        What `gateway.redaction.Redactor` keeps out of every answer, log line and metric."""
        values = [
            keyed.api_key.get_secret_value()
            for upstream in self.upstreams.values()
            for keyed in (upstream, *(upstream.deployments or ()))
            if keyed.api_key is not None
        ]
        values += [
            key.get_secret_value()
            for key in self.auth.keys
            if not key.get_secret_value().startswith("sha256:")
        ]
        if self.state.redis_url is not None:
            url = self.state.redis_url.get_secret_value()
            values += [url, urlsplit(url).password or ""]
        values += [value.get_secret_value() for value in self.tracing.headers.values()]
        return [value for value in values if value]

    def timeout_ceilings(self) -> Timeouts:
        return self.max_timeouts.over(DEFAULT_CEILINGS)


class _FromSources(GatewaySettings):
    """`GatewaySettings` validated from `load_settings`' merged data alone."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)

    def as_gateway_settings(self) -> GatewaySettings:
        """The same values in a plain `GatewaySettings` (already valid: not validated again)."""
        values = {name: getattr(self, name) for name in GatewaySettings.model_fields}
        return GatewaySettings.model_construct(self.model_fields_set, **values)


@dataclass(frozen=True, slots=True)
class LoadedSettings:
    """Valid settings and the sources they came from (for `gateway check-config`)."""

    settings: GatewaySettings
    sources: SettingsSources


def load_settings(
    config_file: Path | str | None = None, *, flags: Sequence[Flag] = (), **overrides: Any
) -> GatewaySettings:
    """Build the settings from a YAML file (or `GATEWAY_CONFIG`), the environment and flags.

    `overrides` (keyword arguments, e.g. from tests) and then `flags` win over every other
    source. Raises `ConfigError` (a `ValueError`) naming each bad field and its source.
    """
    return load_settings_with_sources(config_file, flags=flags, **overrides).settings


def load_settings_with_sources(
    config_file: Path | str | None = None, *, flags: Sequence[Flag] = (), **overrides: Any
) -> LoadedSettings:
    """`load_settings`, also returning where each value came from."""
    layers: list[Layer] = []
    named_by = "--config" if config_file else "GATEWAY_CONFIG"
    path = config_file or os.environ.get("GATEWAY_CONFIG") or None
    if path is not None:
        layers.append(file_layer(Path(path), named_by))
    layers.append(read_environment(GatewaySettings, ENV_PREFIX, ENV_NESTING))
    if overrides:
        layers.append(Layer("arguments", overrides))
    if flags:
        layers.append(flags_layer(flags))
    sources = SettingsSources(tuple(layers))
    problems = [problem for layer in layers for problem in literal_secrets(layer, SECRET_FIELDS)]
    try:
        settings = _FromSources(**sources.merged()).as_gateway_settings()
    except ValidationError as exc:
        raise ConfigError(problems=[*problems, *sources.problems(exc)]) from None
    if problems:
        raise ConfigError(problems=problems)
    return LoadedSettings(settings, sources)
