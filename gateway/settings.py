"""`GatewaySettings`: the gateway's whole configuration, and the only reader of the environment.

Precedence (lowest first): defaults < YAML config file (`--config` or `GATEWAY_CONFIG`) <
environment (`GATEWAY_` prefix, `__` for nesting, e.g. `GATEWAY_TIMEOUTS__IDLE=30`) <
command-line flags (passed in by `gateway.__main__`). Unknown keys are rejected, and a
validation error names the offending field.

Secrets (provider keys) are `SecretStr`, taken from the environment: either directly
(`GATEWAY_UPSTREAMS__<NAME>__API_KEY`) or from the variable an upstream names in
`api_key_env` (e.g. `OPENAI_API_KEY`). With no configuration at all the gateway serves the
built-in mock provider under the model names in `MOCK_MODELS`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from gateway.streaming import DEFAULT_MAX_EVENT_BYTES, Timeouts

__all__ = [
    "DEFAULT_CEILINGS",
    "MOCK_MODELS",
    "AuthSettings",
    "GatewaySettings",
    "LimitSettings",
    "ListenSettings",
    "LogSettings",
    "MetricsSettings",
    "MockSettings",
    "RouteSettings",
    "TargetSettings",
    "TimeoutSettings",
    "UpstreamSettings",
    "load_settings",
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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeoutSettings(_Model):
    """Per-phase limits in seconds (CONTRACT section 6); unset fields inherit."""

    connect: PositiveFloat | None = None
    first_byte: PositiveFloat | None = None
    idle: PositiveFloat | None = None
    total: PositiveFloat | None = None

    def over(self, base: Timeouts) -> Timeouts:
        """`base` with the limits set here replacing its own."""
        return base.with_overrides(**self.model_dump(exclude_none=True))


class ListenSettings(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class MockSettings(_Model):
    """Pace and length of the built-in mock's answers."""

    chunk_delay: float = Field(default=0.05, ge=0)
    slow_chunk_delay: float = Field(default=1.0, ge=0)


class UpstreamSettings(_Model):
    """One upstream API endpoint. `kind` picks the provider module that speaks to it."""

    kind: Literal["openai", "mock"] = "openai"
    base_url: HttpUrl | None = None
    api_key: SecretStr | None = None
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    max_connections: PositiveInt = 1024
    mock: MockSettings = MockSettings()

    @model_validator(mode="after")
    def _needs_base_url(self) -> Self:
        if self.kind != "mock" and self.base_url is None:
            raise ValueError(f"base_url is required for an upstream of kind {self.kind!r}")
        return self


class TargetSettings(_Model):
    """Where a route sends a request: an upstream, and the model name to ask it for."""

    upstream: str
    model: str | None = None  # None: forward the client's model name unchanged


class RouteSettings(_Model):
    """A client-facing model name and the target that serves it."""

    model: str = Field(min_length=1)
    # A list so that failover chains fit the same shape; one target until failover exists.
    targets: list[TargetSettings] = Field(min_length=1, max_length=1)
    timeouts: TimeoutSettings = TimeoutSettings()
    max_timeouts: TimeoutSettings = TimeoutSettings()


class LimitSettings(_Model):
    max_event_bytes: PositiveInt = DEFAULT_MAX_EVENT_BYTES
    max_request_bytes: PositiveInt = 32 * 1024 * 1024
    max_response_bytes: PositiveInt = 64 * 1024 * 1024
    max_error_body_bytes: PositiveInt = 64 * 1024


class LogSettings(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class MetricsSettings(_Model):
    """Prometheus exposition (`GET /metrics`)."""

    enabled: bool = True
    #: A separate listener for `/metrics` only (then the main listener does not serve it).
    listen: ListenSettings | None = None
    #: Ask for a gateway key (see `auth.keys`) on `/metrics`.
    require_key: bool = False


class AuthSettings(_Model):
    """Gateway keys: what clients present to the gateway (never sent upstream)."""

    keys: list[SecretStr] = Field(default_factory=list)


def _default_upstreams() -> dict[str, UpstreamSettings]:
    return {"mock": UpstreamSettings(kind="mock")}


def _default_routes() -> list[RouteSettings]:
    return [
        RouteSettings(model=name, targets=[TargetSettings(upstream="mock")]) for name in MOCK_MODELS
    ]


class GatewaySettings(BaseSettings):
    """Everything the gateway is configured with."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    listen: ListenSettings = ListenSettings()
    upstreams: dict[str, UpstreamSettings] = Field(default_factory=_default_upstreams)
    routes: list[RouteSettings] = Field(default_factory=_default_routes)
    #: Limits for every route (defaults: `Timeouts()`); routes override them.
    timeouts: TimeoutSettings = TimeoutSettings()
    #: Ceilings for per-request `x-gateway-*-timeout` headers (defaults: `DEFAULT_CEILINGS`).
    max_timeouts: TimeoutSettings = TimeoutSettings()
    heartbeat: PositiveFloat | None = 15.0
    limits: LimitSettings = LimitSettings()
    log: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    auth: AuthSettings = AuthSettings()
    #: Worker processes sharing the listener (SO_REUSEPORT); metrics are aggregated across them.
    workers: PositiveInt = 1

    @model_validator(mode="after")
    def _check_references(self) -> Self:
        seen: set[str] = set()
        for index, route in enumerate(self.routes):
            if route.model in seen:
                raise ValueError(f"routes[{index}].model: {route.model!r} is routed twice")
            seen.add(route.model)
            for target in route.targets:
                if target.upstream not in self.upstreams:
                    raise ValueError(
                        f"routes[{index}] ({route.model!r}) names upstream {target.upstream!r}, "
                        f"which is not among upstreams: {sorted(self.upstreams)}"
                    )
        if self.metrics.require_key and not self.auth.keys:
            raise ValueError("metrics.require_key is set but auth.keys holds no gateway key")
        return self

    @model_validator(mode="after")
    def _resolve_key_env(self) -> Self:
        for name, upstream in self.upstreams.items():
            if upstream.api_key is None and upstream.api_key_env:
                value = os.environ.get(upstream.api_key_env)
                if not value:
                    raise ValueError(
                        f"upstreams.{name}.api_key_env names the environment variable "
                        f"{upstream.api_key_env}, which is not set"
                    )
                # Frozen model: set the resolved secret without re-validation.
                object.__setattr__(upstream, "api_key", SecretStr(value))
        return self

    def default_timeouts(self) -> Timeouts:
        return self.timeouts.over(Timeouts())

    def timeout_ceilings(self) -> Timeouts:
        return self.max_timeouts.over(DEFAULT_CEILINGS)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> GatewaySettings:
    """Build the settings from a YAML file (or `GATEWAY_CONFIG`), the environment and flags.

    `overrides` are the command-line flags: they win over every other source.
    """
    path = config_file or os.environ.get("GATEWAY_CONFIG") or None
    if path is not None:
        _check_config_file(Path(path))

    class _FromSources(GatewaySettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if path is not None:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
            return tuple(sources)

    return _FromSources(**overrides)


def _check_config_file(path: Path) -> None:
    """Fail with a plain message (not a traceback) on a missing, unparsable or non-mapping file.

    pydantic-settings' YAML source lets `yaml.YAMLError` escape and turns a top-level list into
    an unrelated `dict()` error; the file is small, so it is parsed once more here first.
    """
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        with path.open(encoding="utf-8") as file:  # a file, so YAML's marks name it
            data = yaml.safe_load(file)
    except yaml.YAMLError as exc:
        raise ValueError(f"config file {path} is not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise ValueError(
            f"config file {path} must be a mapping of settings, not a {type(data).__name__}"
        )
