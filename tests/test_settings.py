"""`GatewaySettings` / `load_settings`: the sources, their precedence, and what is rejected.

Precedence (contract section 9): defaults < YAML file < environment (`GATEWAY_`, `__`) < flags.
`load_settings` raises a `ConfigError` whose text names the offending field (and its source:
`tests/test_settings_errors.py`); `GatewaySettings(...)` built directly raises a
`ValidationError`. Every test starts from an environment without `GATEWAY_*` variables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from gateway.settings import MOCK_MODELS, ConfigError, Flag, GatewaySettings, load_settings
from gateway.streaming import Timeouts


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)


def write_config(directory: Path, config: dict[str, Any], name: str = "gateway.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(config))
    return path


OPENAI_CONFIG: dict[str, Any] = {
    "listen": {"host": "0.0.0.0", "port": 9000},
    "upstreams": {
        "openai": {
            "kind": "openai",
            "base_url": "https://api.openai.example/v1",
            "api_key_env": "TEST_OPENAI_KEY",
        },
    },
    "routes": [
        {
            "model": "gpt-fast",
            "targets": [{"upstream": "openai", "model": "gpt-4o-mini"}],
            "timeouts": {"first_byte": 10},
            "max_timeouts": {"idle": 30},
        }
    ],
    "timeouts": {"idle": 3, "first_byte": 9},
    "heartbeat": 5,
}


# --- sources -----------------------------------------------------------------------------------


def test_defaults_serve_the_builtin_mock() -> None:
    settings = load_settings()

    assert [route.model for route in settings.routes] == list(MOCK_MODELS)
    assert {route.targets[0].upstream for route in settings.routes} == {"mock"}
    assert settings.upstreams["mock"].kind == "mock"
    assert settings.listen.host == "127.0.0.1"
    assert settings.heartbeat == 15.0
    assert settings.default_timeouts() == Timeouts()


def test_yaml_file_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-from-env-1234567890")

    settings = load_settings(write_config(tmp_path, OPENAI_CONFIG))

    assert settings.listen.port == 9000
    assert list(settings.upstreams) == ["openai"]
    assert str(settings.upstreams["openai"].base_url) == "https://api.openai.example/v1"
    route = settings.routes[0]
    assert route.model == "gpt-fast"
    assert route.targets[0].model == "gpt-4o-mini"
    assert settings.heartbeat == 5
    assert settings.default_timeouts().idle == 3
    assert settings.default_timeouts().connect == Timeouts().connect  # unset: the default


def test_yaml_file_is_found_through_gateway_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-from-env-1234567890")
    monkeypatch.setenv("GATEWAY_CONFIG", str(write_config(tmp_path, OPENAI_CONFIG)))

    settings = load_settings()

    assert [route.model for route in settings.routes] == ["gpt-fast"]


def test_missing_config_file_is_an_error_naming_the_file_and_who_named_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=r"not found: .*nowhere\.yaml \(named by --config\)"):
        load_settings(tmp_path / "nowhere.yaml")

    monkeypatch.setenv("GATEWAY_CONFIG", str(tmp_path / "elsewhere.yaml"))
    with pytest.raises(ConfigError, match=r"elsewhere\.yaml \(named by GATEWAY_CONFIG\)"):
        load_settings()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param("timeouts: {idle: 3\n", "not valid YAML", id="syntax-error"),
        pytest.param("- listen\n- routes\n", "must be a mapping", id="top-level-list"),
        pytest.param("just text\n", "must be a mapping", id="top-level-scalar"),
    ],
)
def test_unparsable_config_file_is_a_plain_error_naming_the_file(
    tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)

    with pytest.raises(ValueError, match=says) as raised:
        load_settings(path)

    assert "broken.yaml" in str(raised.value)
    assert not isinstance(raised.value, ValidationError)


def test_unreadable_config_file_is_a_plain_error_naming_it(tmp_path: Path) -> None:
    directory = tmp_path / "gateway.yaml"
    directory.mkdir()

    with pytest.raises(ConfigError, match=r"cannot read config file .*gateway\.yaml: Is a dir"):
        load_settings(directory)


def test_empty_config_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")

    assert [route.model for route in load_settings(path).routes] == list(MOCK_MODELS)


def test_environment_overrides_yaml_and_keeps_its_siblings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-from-env-1234567890")
    monkeypatch.setenv("GATEWAY_TIMEOUTS__IDLE", "7")
    monkeypatch.setenv("GATEWAY_HEARTBEAT", "2.5")

    settings = load_settings(write_config(tmp_path, OPENAI_CONFIG))

    assert settings.timeouts.idle == 7
    assert settings.timeouts.first_byte == 9  # from YAML: nested values merge
    assert settings.heartbeat == 2.5


def test_flags_override_environment_and_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-from-env-1234567890")
    monkeypatch.setenv("GATEWAY_LISTEN__PORT", "8001")
    monkeypatch.setenv("GATEWAY_TIMEOUTS__IDLE", "7")

    settings = load_settings(
        write_config(tmp_path, OPENAI_CONFIG), listen={"port": 8002}, timeouts={"idle": 11}
    )

    assert settings.listen.port == 8002
    assert settings.listen.host == "0.0.0.0"  # from YAML, untouched by the flag
    assert settings.timeouts.idle == 11
    assert settings.timeouts.first_byte == 9


def test_command_line_flags_win_over_keyword_arguments_environment_and_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-from-env-1234567890")
    monkeypatch.setenv("GATEWAY_WORKERS", "3")
    monkeypatch.setenv("GATEWAY_HEARTBEAT", "4")
    config = {**OPENAI_CONFIG, "metrics": {"listen": {"host": "0.0.0.0", "port": 9100}}}

    settings = load_settings(
        write_config(tmp_path, config),
        flags=[
            Flag("--workers", "workers", 5),
            Flag("--heartbeat", "heartbeat", 1.5),
            Flag("--metrics-port", "metrics.listen.port", 9464),
        ],
        workers=4,
    )

    assert settings.workers == 5
    assert settings.heartbeat == 1.5
    assert settings.metrics.listen is not None
    assert settings.metrics.listen.port == 9464
    assert settings.metrics.listen.host == "0.0.0.0"  # from YAML, untouched by the flag


def test_metrics_listener_on_the_main_address_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"metrics\.listen \(flag --metrics-host\)"):
        load_settings(flags=[Flag("--metrics-host", "metrics.listen.host", "0.0.0.0")])

    separate = load_settings(flags=[Flag("--metrics-port", "metrics.listen.port", 9464)])
    assert separate.metrics.listen is not None
    assert separate.metrics.listen.port == 9464


def test_environment_alone_configures_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_LISTEN__PORT", "8123")
    monkeypatch.setenv("GATEWAY_LOG__FORMAT", "json")

    settings = load_settings()

    assert settings.listen.port == 8123
    assert settings.log.format == "json"
    assert [route.model for route in settings.routes] == list(MOCK_MODELS)


EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "gateway.example.yaml"


def test_example_config_in_the_repository_is_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "gateway_keys"
    keys.write_text("# rotated monthly\ngw-example-key-1\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-example-1234567890")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-example-1234567890")
    monkeypatch.setenv("GATEWAY_AUTH__KEYS_FILE", str(keys))  # the file names /run/secrets/...

    settings = load_settings(EXAMPLE)

    assert {"openai", "local-vllm", "anthropic", "mock"} <= set(settings.upstreams)
    assert [key.get_secret_value() for key in settings.auth.keys] == ["gw-example-key-1"]
    for route in settings.routes:
        assert route.targets[0].upstream in settings.upstreams
    anthropic = settings.upstreams["anthropic"]
    assert anthropic.kind == "anthropic"
    assert anthropic.api_key is not None
    assert anthropic.api_key.get_secret_value() == "sk-ant-example-1234567890"
    claude = [
        route.targets[0].upstream for route in settings.routes if route.model.startswith("claude")
    ]
    assert claude == ["anthropic"]


# --- secrets -----------------------------------------------------------------------------------


def test_api_key_env_is_resolved_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-from-env-1234567890")

    settings = load_settings(write_config(tmp_path, OPENAI_CONFIG))

    key = settings.upstreams["openai"].api_key
    assert isinstance(key, SecretStr)
    assert key.get_secret_value() == "sk-from-env-1234567890"
    assert "sk-from-env-1234567890" not in repr(settings)
    assert "sk-from-env-1234567890" not in str(settings.model_dump())


def test_unset_api_key_env_is_an_error_naming_the_field(tmp_path: Path) -> None:
    path = write_config(tmp_path, OPENAI_CONFIG)
    with pytest.raises(ConfigError) as raised:
        load_settings(path)

    text = str(raised.value)
    assert f"upstreams.openai.api_key_env (config file {path})" in text
    assert "TEST_OPENAI_KEY, which is not set" in text


def test_api_key_from_gateway_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_UPSTREAMS__MAIN__API_KEY", "sk-direct-1234567890")
    monkeypatch.setenv("GATEWAY_UPSTREAMS__MAIN__BASE_URL", "http://127.0.0.1:9/v1")

    settings = load_settings(routes=[{"model": "m", "targets": [{"upstream": "main"}]}])

    key = settings.upstreams["main"].api_key
    assert key is not None
    assert key.get_secret_value() == "sk-direct-1234567890"


# --- rejected configurations -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "named"),
    [
        pytest.param({"bogus": 1}, "bogus", id="top-level"),
        pytest.param({"timeouts": {"idel": 3}}, "idel", id="nested"),
        pytest.param({"limits": {"max_bytes": 3}}, "max_bytes", id="limits"),
        pytest.param(
            {"routes": [{"model": "m", "targets": [{"upstream": "mock"}], "retries": 2}]},
            "retries",
            id="in-a-route",
        ),
    ],
)
def test_unknown_key_is_rejected_by_name(
    tmp_path: Path, config: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(write_config(tmp_path, config))


def test_unknown_nested_key_in_environment_is_rejected_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_TIMEOUTS__IDEL", "3")

    with pytest.raises(ConfigError, match=r"timeouts\.idel"):
        load_settings()


def test_route_to_an_unknown_upstream_is_rejected_by_name() -> None:
    with pytest.raises(ValidationError) as raised:
        GatewaySettings(routes=[{"model": "gpt", "targets": [{"upstream": "opneai"}]}])

    assert "opneai" in str(raised.value)
    assert "routes[0]" in str(raised.value)


def test_model_routed_twice_is_rejected() -> None:
    route = {"model": "gpt", "targets": [{"upstream": "mock"}]}
    with pytest.raises(ValidationError, match="routed twice"):
        GatewaySettings(routes=[route, route])


def test_openai_upstream_without_base_url_is_rejected() -> None:
    with pytest.raises(ValidationError) as raised:
        GatewaySettings(upstreams={"openai": {"kind": "openai"}}, routes=[])

    assert "base_url" in str(raised.value)
    assert "upstreams.openai" in str(raised.value)


@pytest.mark.parametrize("value", [0, -1, -0.5])
@pytest.mark.parametrize(
    ("where", "loc"),
    [
        (lambda v: {"timeouts": {"idle": v}}, "timeouts.idle"),
        (lambda v: {"max_timeouts": {"first_byte": v}}, "max_timeouts.first_byte"),
        (
            lambda v: {
                "routes": [
                    {"model": "m", "targets": [{"upstream": "mock"}], "timeouts": {"total": v}}
                ]
            },
            "routes.0.timeouts.total",
        ),
        (lambda v: {"heartbeat": v}, "heartbeat"),
    ],
    ids=["global", "ceiling", "route", "heartbeat"],
)
def test_non_positive_timeout_is_rejected(value: float, where: Any, loc: str) -> None:
    with pytest.raises(ValidationError) as raised:
        GatewaySettings(**where(value))

    assert loc in {".".join(str(p) for p in e["loc"]) for e in raised.value.errors()}


def test_invalid_timeout_in_environment_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TIMEOUTS__IDLE", "-3")

    with pytest.raises(ConfigError, match=r"timeouts\.idle"):
        load_settings()


def test_settings_are_immutable() -> None:
    settings = load_settings()

    with pytest.raises(ValidationError):
        settings.heartbeat = 1  # type: ignore[misc]
