"""Deployment pools of an upstream: `DeploymentSettings`, and how an upstream's keys resolve.

An upstream may be served by several deployments of one model (`upstreams.<name>.deployments`:
Azure resources in several regions, vLLM replicas, OpenAI organisations), or by one URL with
several keys (`api_keys_env`, `api_keys_file`, `api_keys`): each key is then a deployment of
the upstream's URL, named `key-1`, `key-2`... in the order given. After validation an
upstream's `deployments` hold the whole pool, each deployment with its URL and key resolved
(its own, else the upstream's), whatever way it was written; a plain upstream has none.

A deployment's name is a label of metrics and logs: a short identifier from the
configuration, never derived from a URL or a key. Errors name fields and files, never a key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    PositiveFloat,
    SecretStr,
    model_validator,
)

from gateway.settings.sources import Loc, invalid, read_secret_file

__all__ = [
    "MAX_DEPLOYMENTS",
    "DeploymentSettings",
    "Strategy",
    "check_pool",
    "key_sources",
    "resolve_key",
]

#: Most deployments (or keys) of one upstream.
MAX_DEPLOYMENTS = 32

#: How a request picks among a pool's deployments (`gateway.routing.pools`).
Strategy = Literal["weighted", "least_in_flight", "lowest_latency"]

#: The fields that give an upstream's one key, and those that give it several.
ONE_KEY = ("api_key", "api_key_env", "api_key_file")
KEYS = ("api_keys", "api_keys_env", "api_keys_file")


class _Keyed(Protocol):
    @property
    def api_key(self) -> SecretStr | None: ...

    @property
    def api_key_env(self) -> str | None: ...

    @property
    def api_key_file(self) -> Path | None: ...


class DeploymentSettings(BaseModel):
    """One deployment of an upstream's model: where it is, its key, its share of the traffic.
    Unset fields are the upstream's; its circuit, slots and metrics are its own."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.\-]{1,64}$",
        description="The deployment's name in metrics and logs (`eastus`, `replica-2`); "
        "unique in its upstream.",
    )
    base_url: HttpUrl | None = Field(
        None, description="This deployment's base URL (unset: the upstream's)."
    )
    api_key: SecretStr | None = Field(
        None,
        description="This deployment's key (unset: the upstream's). Never in the config file: "
        "resolved from `api_key_env` / `api_key_file`.",
    )
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding this deployment's key.",
    )
    api_key_file: Path | None = Field(
        None, description="File holding this deployment's key (surrounding whitespace stripped)."
    )
    weight: PositiveFloat = Field(
        1.0,
        description="Its share of the requests under `weighted` (twice the weight: twice the "
        "requests), and the tie-break of the other strategies.",
    )
    model: str | None = Field(
        None,
        min_length=1,
        description="Model name sent to this deployment (e.g. an Azure deployment name that "
        "differs per resource); unset: the target's.",
    )

    @model_validator(mode="after")
    def _check(self) -> DeploymentSettings:
        given = key_sources(self, ONE_KEY)
        if len(given) > 1:
            raise invalid((), f"the key is given {len(given)} ways ({', '.join(given)}): give one")
        resolve_key(self)
        return self


def key_sources(model: BaseModel, names: tuple[str, ...]) -> list[str]:
    """Which of the fields `names` the configuration set on `model`."""
    return [
        name
        for name in names
        if getattr(model, name) is not None and name in model.model_fields_set
    ]


def resolve_key(model: _Keyed) -> None:
    """Set `model.api_key` from `api_key_env` or `api_key_file`, if one is given (the model
    is frozen and already valid: set without re-validation)."""
    if model.api_key_env is not None:
        value = os.environ.get(model.api_key_env, "").strip()
        if not value:
            raise invalid(
                ("api_key_env",),
                f"api_key_env names the environment variable {model.api_key_env}, which is not set",
            )
        object.__setattr__(model, "api_key", SecretStr(value))
    elif model.api_key_file is not None:
        value = read_secret_file(model.api_key_file, ("api_key_file",))
        if "\n" in value:
            raise invalid(
                ("api_key_file",), f"api_key_file {model.api_key_file} holds several lines"
            )
        object.__setattr__(model, "api_key", SecretStr(value))


def _keys(upstream: Any) -> list[SecretStr] | None:
    """The upstream's several keys (`api_keys`, `api_keys_env`, `api_keys_file`), if given."""
    if upstream.api_keys is not None:
        keys = [key for key in upstream.api_keys if key.get_secret_value().strip()]
        if len(keys) != len(upstream.api_keys) or not keys:
            raise invalid(("api_keys",), "api_keys must be a list of non-empty keys")
        return [SecretStr(key.get_secret_value().strip()) for key in keys]
    if upstream.api_keys_env is not None:
        values = []
        for index, name in enumerate(upstream.api_keys_env):
            value = os.environ.get(name, "").strip()
            if not value:
                raise invalid(
                    ("api_keys_env", index),
                    f"api_keys_env names the environment variable {name}, which is not set",
                )
            values.append(SecretStr(value))
        return values
    if upstream.api_keys_file is not None:
        text = read_secret_file(upstream.api_keys_file, ("api_keys_file",))
        return [SecretStr(line.strip()) for line in text.splitlines() if line.strip()]
    return None


def check_pool(upstream: Any, *, needs_url: bool) -> None:
    """Validate an upstream's pool and write it out whole into `upstream.deployments`: the
    keys expanded into deployments, each deployment's URL and key resolved."""
    given = key_sources(upstream, ONE_KEY + KEYS)
    if len(given) > 1:
        raise invalid((), f"the key is given {len(given)} ways ({', '.join(given)}): give one")
    keys = _keys(upstream)
    deployments: list[DeploymentSettings] | None = upstream.deployments
    if keys is not None:
        if deployments is not None:
            raise invalid(
                (given[0],),
                f"{given[0]} and deployments are both set: give each deployment its key",
            )
        if len(keys) > MAX_DEPLOYMENTS:
            raise invalid((given[0],), f"{given[0]} holds more than {MAX_DEPLOYMENTS} keys")
        deployments = [
            DeploymentSettings(name=f"key-{number}", api_key=key)
            for number, key in enumerate(keys, 1)
        ]
        object.__setattr__(upstream, "api_key", None)
    if deployments is None:
        if "strategy" in upstream.model_fields_set:
            raise invalid(
                ("strategy",),
                "strategy is set, but the upstream has no deployments or keys to spread over",
            )
        return
    names = [deployment.name for deployment in deployments]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise invalid(("deployments",), f"deployments named twice: {', '.join(twice)}")
    for index, deployment in enumerate(deployments):
        if deployment.base_url is None:
            if needs_url and upstream.base_url is None:
                at: Loc = ("deployments", index, "base_url")
                raise invalid(
                    at,
                    f"deployments[{index}] ({deployment.name}) has no base_url, and the "
                    "upstream has none to inherit",
                )
            object.__setattr__(deployment, "base_url", upstream.base_url)
        if deployment.api_key is None:
            object.__setattr__(deployment, "api_key", upstream.api_key)
    object.__setattr__(upstream, "deployments", deployments)
