"""The sections of `GatewaySettings`: listener, upstreams, routes, limits, logs, metrics, keys,
browsers (`cors`, in `gateway.settings.cors`).

Every section rejects unknown keys, is frozen, and never shows an input value in a validation
error (`hide_input_in_errors`: an input may be a secret). Every field has a description: the
README's settings reference is generated from them (`gateway.settings.reference`).

Two sections resolve secrets while they are validated, so that after validation the secret
fields hold the key whatever its source: `UpstreamSettings.api_key` (from `api_key_env` or
`api_key_file`, exactly one source) and `AuthSettings.keys` (from `keys_file`; the `auth`
section lives in `gateway.settings.auth`). A validation error names the path of a secret
file, never its content.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from gateway.settings.auth import AuthSettings
from gateway.settings.cors import CorsSettings
from gateway.settings.deployments import (
    ONE_KEY,
    DeploymentSettings,
    Strategy,
    check_pool,
    key_sources,
    resolve_key,
)
from gateway.settings.sources import invalid
from gateway.streaming import DEFAULT_MAX_EVENT_BYTES, Timeouts

__all__ = [
    "MAX_TARGETS",
    "AuthSettings",
    "CircuitSettings",
    "CorsSettings",
    "DeploymentSettings",
    "LimitSettings",
    "ListenSettings",
    "LogSettings",
    "MetricsSettings",
    "MockSettings",
    "PhaseTimeoutSettings",
    "RetrySettings",
    "RouteSettings",
    "ServerSettings",
    "StateSettings",
    "TargetSettings",
    "TimeoutSettings",
    "TracingSettings",
    "UpstreamSettings",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class PhaseTimeoutSettings(_Model):
    """The limits of one upstream call in seconds (contract section 6); unset fields inherit.

    A target's own limits: the total deadline belongs to the request (every target it tries,
    retries and backoff included), so it is set on the route, not here."""

    connect: PositiveFloat | None = Field(None, description="TCP+TLS connect to the upstream.")
    first_byte: PositiveFloat | None = Field(
        None, description="Request sent -> first upstream event (silent upstreams, slow tokens)."
    )
    first_token: PositiveFloat | None = Field(
        None,
        description="Request sent -> first event that carries answer content (text, a tool "
        "call, reasoning; not a role-only chunk, a ping or an empty delta). When it fires, the "
        "request restarts on the next target. Unset: no such limit.",
    )
    idle: PositiveFloat | None = Field(
        None, description="Gap between two upstream events (the gateway's heartbeats don't count)."
    )

    def overrides(self) -> dict[str, float]:
        """The limits set here, by `Timeouts` field name."""
        return self.model_dump(exclude_none=True)


class TimeoutSettings(PhaseTimeoutSettings):
    """Per-phase limits in seconds (contract section 6); unset fields inherit."""

    total: PositiveFloat | None = Field(
        None, description="The whole request, every attempt, retry and backoff included."
    )

    def over(self, base: Timeouts) -> Timeouts:
        """`base` with the limits set here replacing its own."""
        return base.with_overrides(**self.model_dump(exclude_none=True))


class ListenSettings(_Model):
    host: str = Field("127.0.0.1", description="Address to listen on (`0.0.0.0`: all IPv4).")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0: any free port).")


class ServerSettings(_Model):
    """What the gateway says about itself in every response."""

    header: str = Field(
        "sse-gateway",
        max_length=128,
        # Visible ASCII, inner spaces allowed: nothing that could break a header line.
        pattern=r"^([\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?)?$",
        description="The `Server` header of every response (aiohttp's rejections, `/healthz` "
        "and `/metrics` included); empty: no `Server` header. No version by default: a "
        "version tells a scanner which advisories to try.",
    )


class MockSettings(_Model):
    """Pace and length of the built-in mock's answers."""

    chunk_delay: float = Field(0.05, ge=0, description="Seconds between the mock's chunks.")
    slow_chunk_delay: float = Field(
        1.0, ge=0, description="Seconds between the chunks of `mock-slow`."
    )


#: An API's name (`gateway.apis`), as an upstream's `apis` lists it.
UpstreamApi = Literal[
    "chat_completions", "responses", "embeddings", "completions", "messages", "count_tokens"
]
#: The APIs of each HTTP kind (the mock speaks every API).
KIND_APIS: dict[str, frozenset[str]] = {
    "openai": frozenset({"chat_completions", "responses", "embeddings", "completions"}),
    "azure": frozenset({"chat_completions", "responses", "embeddings", "completions"}),
    "anthropic": frozenset({"messages", "count_tokens"}),
}


#: The name of an environment variable.
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class UpstreamSettings(_Model):
    """One upstream API endpoint. `kind` picks the provider module that speaks to it."""

    kind: Literal["openai", "azure", "anthropic", "mock"] = Field(
        "openai",
        description="Provider: `openai` (any OpenAI-compatible API: OpenAI, vLLM, Ollama, "
        "llama.cpp, LM Studio...; serves `/v1/chat/completions`), `azure` (Azure OpenAI: "
        "deployment URLs or the v1 API, see `api_version`), `anthropic` (Anthropic's "
        "Messages API or a compatible one; serves `/v1/messages`) or `mock` (built-in; "
        "serves both).",
    )
    base_url: HttpUrl | None = Field(
        None,
        description="API base URL, as the provider's SDK takes it: e.g. "
        "`https://api.openai.com/v1` (`openai`), `https://api.anthropic.com` (`anthropic`; "
        "`/v1/messages` is appended), the resource endpoint `https://NAME.openai.azure.com` "
        "(`azure`; no path). Not for `mock`. With `deployments`: the URL of those that "
        "name none.",
    )
    api_key: SecretStr | None = Field(
        None,
        description="The upstream's key. Never in the config file: from the environment "
        "only, or resolved from `api_key_env` / `api_key_file`.",
    )
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the key, e.g. `OPENAI_API_KEY`.",
    )
    api_key_file: Path | None = Field(
        None,
        description="File holding the key, e.g. a Docker/k8s secret "
        "`/run/secrets/openai_api_key` (surrounding whitespace stripped).",
    )
    api_keys: list[SecretStr] | None = Field(
        None,
        description="Several keys of this upstream, each a deployment of its URL (`key-1`, "
        "`key-2`...: a rate-limited key fails over to the next). From the environment only "
        '(`GATEWAY_UPSTREAMS__<NAME>__API_KEYS=\'["k1", "k2"]\'`), or resolved from '
        "`api_keys_env` / `api_keys_file`.",
    )
    api_keys_env: list[EnvName] | None = Field(
        None, description="Environment variables holding several keys, one each."
    )
    api_keys_file: Path | None = Field(
        None, description="File holding several keys, one a line (blank lines ignored)."
    )
    deployments: list[DeploymentSettings] | None = Field(
        None,
        min_length=1,
        description="Several deployments of this upstream's model, spread by `strategy`; "
        "failover tries the other healthy ones before the route's next target. Each has its "
        "own circuit, slots and metrics.",
    )
    strategy: Strategy = Field(
        "weighted",
        description="How a request picks among `deployments` (or keys): `weighted` (at "
        "random, by weight), `least_in_flight` (fewest calls in flight in this process, ties "
        "by weight) or `lowest_latency` (lowest moving average of time to first token; "
        "untried deployments first, ties by weight).",
    )
    auth_scheme: Literal["bearer", "x-api-key", "api-key"] | None = Field(
        None,
        description="How the key is sent: `bearer` (`Authorization: Bearer <key>`, also an "
        "Entra ID token), `x-api-key` or `api-key` (Azure's header); unset: the kind's own "
        "(`openai`: bearer, `anthropic`: x-api-key, `azure`: api-key).",
    )
    api_version: str | None = Field(
        None,
        pattern=r"^(v1|\d{4}-\d{2}-\d{2}(-preview)?)$",
        description="Kind `azure`: `v1` (unset: the v1 API, `{base_url}/openai/v1/...`, the "
        "model in the body) or a dated version such as `2024-10-21` (the deployment URLs "
        "`{base_url}/openai/deployments/{model}/chat/completions?api-version=...`; the "
        "target's model is the Azure deployment name).",
    )
    anthropic_version: str = Field(
        "2023-06-01",
        pattern=r"^\d{4}-\d{2}-\d{2}$",
        description="`anthropic-version` sent to an `anthropic` upstream when the client "
        "sends none (a client's sane one is passed on).",
    )
    max_connections: PositiveInt | None = Field(
        None,
        description="Connections to this upstream in use at once (a call beyond them waits at "
        "most its connect deadline, then 503 `gateway_overloaded`); unset: as many as "
        "`limits.max_streams`, so the pool never turns away what the gateway admits.",
    )
    apis: list[UpstreamApi] | None = Field(
        None,
        description="The APIs this upstream serves, of its kind's (unset: all of them: "
        "`openai`: chat_completions, responses, embeddings, completions; `anthropic`: messages, "
        "count_tokens). A client of an API it does not serve is translated to one it does "
        "where the gateway can (chat_completions, messages, responses): e.g. `[chat_completions]` "
        "for an OpenAI-compatible server without the Responses API.",
    )
    stream_usage: bool = Field(
        True,
        description="Ask for the usage of a Chat Completions (or legacy Completions) stream "
        "whose client did not (`stream_options.include_usage`), to record its tokens; the "
        "extra usage chunk is not relayed to that client. Turn off for an OpenAI-compatible "
        "server that rejects `stream_options`.",
    )
    mock: MockSettings = Field(MockSettings(), description="Pacing of kind `mock`.")

    @field_validator("api_version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        """An unquoted `2024-10-21` is a date to YAML: taken as the version it spells."""
        return value.isoformat() if isinstance(value, datetime.date) else value

    @model_validator(mode="after")
    def _check(self) -> Self:
        pooled_urls = self.deployments is not None and all(
            deployment.base_url is not None for deployment in self.deployments
        )
        if self.kind != "mock" and self.base_url is None and not pooled_urls:
            raise invalid(
                ("base_url",), f"base_url is required for an upstream of kind {self.kind!r}"
            )
        if self.api_version is not None and self.kind != "azure":
            raise invalid(("api_version",), "api_version is for an upstream of kind 'azure'")
        if self.apis is not None:
            spoken = KIND_APIS.get(self.kind)
            strangers = sorted(set(self.apis) - spoken) if spoken is not None else []
            if not self.apis or strangers:
                names = ", ".join(sorted(spoken or ()))
                raise invalid(
                    ("apis",),
                    f"apis must name some of the APIs of kind {self.kind!r} ({names})"
                    + (f", not {', '.join(strangers)}" if strangers else ""),
                )
        given = key_sources(self, ONE_KEY)
        if len(given) > 1:
            raise invalid((), f"the key is given {len(given)} ways ({', '.join(given)}): give one")
        resolve_key(self)
        check_pool(self, needs_url=self.kind != "mock")
        if self.kind == "azure":
            urls = [self.base_url, *(d.base_url for d in self.deployments or ())]
            if any(url is not None and url.path not in (None, "", "/") for url in urls):
                raise invalid(
                    ("base_url",),
                    "an azure base_url is the resource endpoint, with no path: "
                    "https://NAME.openai.azure.com (the gateway adds /openai/...)",
                )
        return self


class RetrySettings(_Model):
    """Retries of the same target before the first byte; unset fields inherit (the route's
    from the global `retry`, that one from the built-in policy)."""

    attempts: PositiveInt | None = Field(
        None,
        description="Calls per target, the first included (unset: 3); 1 never retries. Then "
        "the request fails over to the next target.",
    )
    backoff_initial: PositiveFloat | None = Field(
        None,
        description="Seconds: the first retry waits up to this, the next up to twice as long... "
        "(full jitter: a uniform draw below the bound; unset: 0.5).",
    )
    backoff_max: PositiveFloat | None = Field(
        None, description="Seconds: the bound of the backoff never grows past this (unset: 8)."
    )
    retry_after_max: NonNegativeFloat | None = Field(
        None,
        description="Seconds: an upstream's `Retry-After` / `retry-after-ms` up to this is "
        "waited for as given; a longer one is not waited for: the next target is tried, or "
        "the client gets the upstream's answer with its hint (unset: 20).",
    )

    def overrides(self) -> dict[str, Any]:
        """The fields set here, by `RetryPolicy` field name."""
        return self.model_dump(exclude_none=True)


class CircuitSettings(_Model):
    """Circuit breaking per target, in this process (shared by every replica with
    `state.redis_url`): a target that keeps failing is skipped (requests go to the next
    target at once) until one probe finds it healthy again."""

    failures: NonNegativeInt = Field(
        5,
        description="Consecutive failures of a target that open its circuit (its own faults: "
        "connect failures, resets, timeouts, 5xx, 429, cut streams; not the request's 4xx); "
        "0: never open.",
    )
    cooldown: PositiveFloat = Field(
        10.0,
        description="Seconds an open circuit skips its target; then one request probes it: "
        "success closes the circuit, failure opens it for another cooldown.",
    )


class StateSettings(_Model):
    """What the gateway remembers between requests, and where: in this process, or shared by
    every replica through Redis (`redis_url`)."""

    max_responses: PositiveInt = Field(
        100_000,
        description="Response ids whose upstream the gateway remembers, so that follow-ups "
        "(`previous_response_id`, `GET`/`DELETE /v1/responses/{id}`, cancel, input items) "
        "reach it; the oldest are forgotten first (about 200 bytes each).",
    )
    response_ttl: PositiveFloat = Field(
        2_592_000,
        description="Seconds a response id's upstream is remembered (default 30 days, as "
        "long as OpenAI keeps a stored response).",
    )
    redis_url: SecretStr | None = Field(
        None,
        description="Redis shared by every replica (`redis://[:password@]host:port/db`, "
        "`rediss://` for TLS, `unix://`): the keys' limits, the circuits and the response "
        "owners are shared through it (unset: in this process). It may hold a password: "
        "never in the config file, from the environment (`GATEWAY_STATE__REDIS_URL`).",
    )
    redis_timeout: PositiveFloat = Field(
        0.05,
        description="Seconds a Redis call may take (connect included); past it, or with "
        "Redis down, `on_error` decides.",
    )
    on_error: Literal["open", "closed"] = Field(
        "open",
        description="When Redis is slow or down: `open` admits and counts the keys' limits in "
        "this process; `closed` refuses what needs Redis (keys with limits, follow-ups of "
        "stored responses) with 503. Either way it is counted "
        "(`gateway_state_fallbacks`).",
    )
    resume_ttl: PositiveFloat = Field(
        600.0,
        description="Seconds a resumable stream's events are kept after it ended, for "
        "`GET /v1/streams/{id}` (and a translated background response's resume).",
    )
    redis_prefix: str = Field(
        "sse-gateway:",
        pattern=r"^[A-Za-z0-9_.:\-]{0,64}$",
        description="Start of every Redis key the gateway writes (several fleets may share "
        "one Redis).",
    )

    @model_validator(mode="after")
    def _check_url(self) -> Self:
        if self.redis_url is not None:
            scheme = self.redis_url.get_secret_value().partition("://")[0]
            if scheme not in ("redis", "rediss", "unix"):
                raise invalid(
                    ("redis_url",), "state.redis_url must start with redis://, rediss:// or unix://"
                )
        return self


#: An upstream error code as a route's lists name it (the provider's own, or the gateway's).
ErrorCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


class TargetSettings(_Model):
    """Where a route sends a request: an upstream, the model name to ask it for, and what this
    target allows (its own limits, assistant prefill, concurrent streams)."""

    upstream: str = Field(description="Name of an entry of `upstreams`.")
    model: str | None = Field(
        None, description="Model name sent upstream (unset: the client's, unchanged)."
    )
    timeouts: PhaseTimeoutSettings = Field(
        PhaseTimeoutSettings(),
        description="This target's `connect`, `first_byte`, `first_token` and `idle` limits "
        "(unset: the route's); a request's `x-gateway-*-timeout` headers still win, up to the "
        "ceilings.",
    )
    prefill: bool = Field(
        False,
        description="The target continues a final assistant message (Anthropic; vLLM, "
        "llama.cpp, Ollama): a stream cut after its first byte may be continued here.",
    )
    max_streams: PositiveInt | None = Field(
        None,
        description="Most requests (streaming or not) in flight to this target in this "
        "process; when it is full, requests go to the next target (unset: no limit).",
    )
    default_max_tokens: PositiveInt = Field(
        4096,
        description="The output limit sent to a target whose API requires one (Anthropic's "
        "`max_tokens`) when a translated request gave none.",
    )


#: Most targets in one route's chain.
MAX_TARGETS = 8


class RouteSettings(_Model):
    """A client-facing model name (or glob pattern) and the chain of targets that serves it."""

    model: str = Field(
        min_length=1,
        description="Model name clients ask for, or a glob (`gpt-4o*`, `claude-?-*`, `[ab]*`): "
        "exact names win, then patterns in configuration order.",
    )
    targets: list[TargetSettings] = Field(
        min_length=1,
        max_length=MAX_TARGETS,
        description=f"Where requests go, in order (at most {MAX_TARGETS}): the first target "
        "serves them; the next ones take over when it fails before the first byte.",
    )
    timeouts: TimeoutSettings = Field(
        TimeoutSettings(), description="This route's limits (unset: the global `timeouts`)."
    )
    max_timeouts: TimeoutSettings = Field(
        TimeoutSettings(),
        description="This route's ceilings for request headers (unset: global `max_timeouts`).",
    )
    retry: RetrySettings = Field(
        RetrySettings(), description="This route's retries (unset fields: the global `retry`)."
    )
    failover_on: list[ErrorCode] = Field(
        default_factory=list,
        description="Upstream error codes that move the request to the next target at once, "
        "instead of ending it (e.g. `context_length_exceeded`, for a larger-context target).",
    )
    propagate: list[ErrorCode] = Field(
        default_factory=list,
        description="Upstream error codes passed to the client as they are: no retry, no "
        "failover (e.g. `content_policy_violation`); wins over every other rule.",
    )
    drop_params: bool = Field(
        False,
        description="Leave out the request parameters a target cannot honour in its API "
        "(the gateway translates between APIs) instead of answering 400 naming them.",
    )
    continuations: NonNegativeInt = Field(
        2,
        description="Most continuations of one stream cut or stalled after its first byte: "
        "the answer so far is sent as an assistant prefill to a target with `prefill: true` "
        "and the rest is spliced into the client's stream (0: never; no such target: never).",
    )
    resumable: bool = Field(
        False,
        description="Every stream of this route is resumable: its events carry `id:` lines, "
        "are kept (`state.resume_ttl`) and outlive the client's connection "
        "(`GET /v1/streams/{id}`); per request: `x-gateway-resumable: true`.",
    )


class LimitSettings(_Model):
    """What one client request may take: sizes, how long it may take to arrive, and how many
    may be in flight (contract section 4: 408, 413, 431, 503)."""

    max_event_bytes: PositiveInt = Field(
        DEFAULT_MAX_EVENT_BYTES,
        description="Largest SSE event; a larger one ends the stream (`event_too_large`).",
    )
    max_request_bytes: PositiveInt = Field(
        32 * 1024 * 1024, description="Largest client request body (413 beyond)."
    )
    max_response_bytes: PositiveInt = Field(
        64 * 1024 * 1024, description="Largest non-streaming upstream response."
    )
    max_error_body_bytes: PositiveInt = Field(
        64 * 1024, description="Bytes read of an upstream error body."
    )
    head_timeout: PositiveFloat = Field(
        15.0,
        description="Seconds a connection has to deliver a whole request head (request line and "
        "headers), from its opening or from the end of its previous response; then it is "
        "closed. Also how long an idle keep-alive connection is kept.",
    )
    body_timeout: PositiveFloat = Field(
        60.0,
        description="Seconds to receive a whole request body once it is being read; then 408 "
        "and the connection is closed.",
    )
    write_stall: PositiveFloat = Field(
        30.0,
        description="Seconds a client connection may accept no bytes while the gateway has "
        "more to send (its socket and buffers full: a client that stopped reading); then "
        "both it and the upstream are closed and the stream is recorded as `write_stall`.",
    )
    max_header_line_bytes: PositiveInt = Field(
        8190,
        description="Longest request line or header field; a longer one is answered 431 and "
        "the connection closed.",
    )
    max_headers: PositiveInt = Field(
        128, description="Most header fields in a request (400 beyond)."
    )
    max_resume_events: PositiveInt = Field(
        100_000,
        description="Most events kept of one resumable stream (the oldest go first; a resume "
        "from before them ends with `stream_interrupted`).",
    )
    max_resume_bytes: PositiveInt = Field(
        16 * 1024 * 1024,
        description="Most bytes of events kept of one resumable stream (the oldest go first).",
    )
    max_streams: PositiveInt = Field(
        10_000,
        description="Requests (streaming or not) relayed at once by this process; beyond it an "
        "immediate 503 `gateway_overloaded` with `Retry-After`.",
    )


class LogSettings(_Model):
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level logged."
    )
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="`auto`: pretty on a terminal, JSON otherwise."
    )


class TracingSettings(_Model):
    """OpenTelemetry traces (OTLP over HTTP): a span per relayed request, one per upstream call
    and per Redis call. Off by default."""

    enabled: bool = Field(
        False,
        description="Export traces. Off: no span is made; a client's valid `traceparent` "
        "and `tracestate` are still passed upstream unchanged.",
    )
    endpoint: HttpUrl = Field(
        HttpUrl("http://127.0.0.1:4318/v1/traces"),
        description="The OTLP/HTTP (protobuf) traces endpoint of a collector (default "
        "`http://127.0.0.1:4318/v1/traces`).",
    )
    service_name: str = Field(
        "sse-gateway",
        min_length=1,
        max_length=128,
        description="`service.name` of the spans.",
    )
    sample_ratio: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Share of new traces recorded; a client's `traceparent` decides for its "
        "own trace (parent-based).",
    )
    record_content: bool = Field(
        False,
        description="Record the prompt (`gen_ai.input.messages`) on the request's span. "
        "Off: no prompt or completion text is ever recorded.",
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Headers of every export (a collector's credentials): secret, never "
        "in the config file, from `GATEWAY_TRACING__HEADERS` (a JSON object).",
    )


class MetricsSettings(_Model):
    """Prometheus exposition (`GET /metrics`)."""

    enabled: bool = Field(True, description="Serve Prometheus metrics at `GET /metrics`.")
    listen: ListenSettings | None = Field(
        None,
        description="A separate listener for `/metrics` only (unset: the main listener).",
    )
    require_key: bool | None = Field(
        None,
        description="Ask for a gateway key (see `auth`) on `/metrics`. Unset (auto): yes "
        "when gateway keys are configured and `/metrics` is on the main listener; no on its "
        "own `metrics.listen` (keep that port private: Prometheus scrapes it). `false`: "
        "never (an explicit opt-out); `true`: always (gateway keys required).",
    )

    def key_required(self, *, keys_configured: bool) -> bool:
        """Whether `/metrics` asks for a gateway key, `require_key`'s auto resolved."""
        if self.require_key is not None:
            return self.require_key
        return keys_configured and self.listen is None
