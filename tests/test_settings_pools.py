"""Deployment pools and Azure in the settings: how a pool is written, what it resolves to, and
the errors that name what is wrong (never a key)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.providers import build_providers, provider_key
from gateway.redaction import Redactor
from gateway.settings import ConfigError, load_settings

KEY_A, KEY_B, KEY_C = "sk-pool-a-canary-31f4", "sk-pool-b-canary-59e2", "sk-pool-c-canary-65b8"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)


def settings_of(**upstream: Any) -> Any:
    return load_settings(
        upstreams={"up": upstream}, routes=[{"model": "m", "targets": [{"upstream": "up"}]}]
    )


def error_of(**upstream: Any) -> str:
    with pytest.raises(ConfigError) as raised:
        settings_of(**upstream)
    text = str(raised.value)
    assert not any(key in text for key in (KEY_A, KEY_B, KEY_C))
    return text


def test_several_keys_are_deployments_of_the_upstreams_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEY_A", KEY_A)
    monkeypatch.setenv("KEY_B", KEY_B)

    upstream = settings_of(base_url="https://api.example/v1", api_keys_env=["KEY_A", "KEY_B"])
    pool = upstream.upstreams["up"].deployments

    assert [d.name for d in pool] == ["key-1", "key-2"]
    assert [d.api_key.get_secret_value() for d in pool] == [KEY_A, KEY_B]
    assert {str(d.base_url) for d in pool} == {"https://api.example/v1"}
    assert upstream.upstreams["up"].api_key is None


def test_a_keys_file_holds_one_key_a_line(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"{KEY_A}\n\n{KEY_B}\n")

    pool = settings_of(base_url="https://api.example/v1", api_keys_file=str(path))

    keys = [d.api_key.get_secret_value() for d in pool.upstreams["up"].deployments]
    assert keys == [KEY_A, KEY_B]


def test_deployments_inherit_the_upstreams_url_and_key() -> None:
    settings = settings_of(
        base_url="https://east.example/v1",
        api_key=KEY_A,
        strategy="least_in_flight",
        deployments=[
            {"name": "east", "weight": 2},
            {"name": "west", "base_url": "https://west.example/v1", "api_key": KEY_B},
        ],
    )
    east, west = settings.upstreams["up"].deployments

    assert (str(east.base_url), east.api_key.get_secret_value(), east.weight) == (
        "https://east.example/v1", KEY_A, 2.0,
    )  # fmt: skip
    assert (str(west.base_url), west.api_key.get_secret_value()) == (
        "https://west.example/v1", KEY_B,
    )  # fmt: skip
    assert set(settings.secret_values()) == {KEY_A, KEY_B}


def test_each_deployment_gets_its_own_provider() -> None:
    settings = settings_of(
        kind="azure",
        api_key=KEY_A,
        deployments=[
            {"name": "east", "base_url": "https://east.openai.azure.com"},
            {"name": "west", "base_url": "https://west.openai.azure.com", "api_key": KEY_B},
        ],
    )

    providers = build_providers(settings, Redactor(settings.secret_values()))

    assert set(providers) == {provider_key("up", "east"), provider_key("up", "west")}
    assert {provider.name for provider in providers.values()} == {"up"}


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        (
            {"base_url": "https://a.example/v1", "api_key": KEY_A, "api_keys": [KEY_B]},
            "the key is given 2 ways (api_key, api_keys)",
        ),
        (
            {
                "base_url": "https://a.example/v1",
                "api_keys": [KEY_A],
                "deployments": [{"name": "x"}],
            },
            "api_keys and deployments are both set",
        ),
        (
            {"base_url": "https://a.example/v1", "deployments": [{"name": "x"}, {"name": "x"}]},
            "deployments named twice: x",
        ),
        (
            {"base_url": "https://a.example/v1", "strategy": "lowest_latency"},
            "strategy is set, but the upstream has no deployments or keys",
        ),
        (
            {"deployments": [{"name": "x", "base_url": "https://x.example/v1"}, {"name": "y"}]},
            "base_url is required",
        ),
        (
            {"base_url": "https://a.example/v1", "deployments": [{"name": "bad name"}]},
            "upstreams.up.deployments[0].name",
        ),
        (
            {"kind": "azure", "base_url": "https://r.openai.azure.com/openai/v1"},
            "an azure base_url is the resource endpoint, with no path",
        ),
        (
            {"base_url": "https://a.example/v1", "api_version": "2024-10-21"},
            "api_version is for an upstream of kind 'azure'",
        ),
        (
            {"kind": "azure", "base_url": "https://r.openai.azure.com", "api_version": "latest"},
            "upstreams.up.api_version",
        ),
    ],
)
def test_a_bad_pool_is_refused_with_a_clear_error(upstream: dict[str, Any], expected: str) -> None:
    assert expected in error_of(**upstream)


def test_a_deployment_key_written_in_the_config_file_is_refused(tmp_path: Path) -> None:
    config = {
        "upstreams": {
            "up": {
                "base_url": "https://a.example/v1",
                "deployments": [{"name": "x", "api_key": KEY_A}],
                "api_keys": [KEY_B],
            }
        },
        "routes": [{"model": "m", "targets": [{"upstream": "up"}]}],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))

    with pytest.raises(ConfigError) as raised:
        load_settings(path)

    text = str(raised.value)
    assert "upstreams.up.deployments[0].api_key" in text
    assert "upstreams.up.api_keys" in text
    assert "a secret may not be written in the config file" in text
    assert KEY_A not in text
    assert KEY_B not in text


def test_keys_from_the_environment_may_be_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_UPSTREAMS__UP__API_KEYS", f'["{KEY_A}", "{KEY_C}"]')

    settings = load_settings(
        upstreams={"up": {"base_url": "https://a.example/v1"}},
        routes=[{"model": "m", "targets": [{"upstream": "up"}]}],
    )

    assert Redactor(settings.secret_values()).redact_text(f"{KEY_A} {KEY_C}") != (
        f"{KEY_A} {KEY_C}"
    )
    assert len(settings.upstreams["up"].deployments) == 2


def test_an_unquoted_api_version_in_yaml_is_the_version_it_spells(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "upstreams:\n"
        "  azure: {kind: azure, base_url: 'https://r.openai.azure.com', api_version: 2024-10-21}\n"
        "routes: [{model: m, targets: [{upstream: azure}]}]\n"
    )

    assert load_settings(path).upstreams["azure"].api_version == "2024-10-21"
