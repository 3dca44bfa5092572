"""Secrets in the settings: where provider and gateway keys may come from, and where they may not.

A provider key comes from exactly one of `api_key_env`, `api_key_file` or the environment
(`GATEWAY_UPSTREAMS__<NAME>__API_KEY`); gateway keys from `auth.keys_file` or
`GATEWAY_AUTH__KEYS`. A literal secret in the YAML file is rejected; keyword arguments (code,
tests) may still hold one. No secret ever appears in an error message or a repr: the canary
tests plant one and look for it everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from gateway.settings import ConfigError, GatewaySettings, load_settings

CANARY = "sk-canary-5d1e0b7a93c4"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)


def write_config(directory: Path, config: dict[str, Any]) -> Path:
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def openai_config(**upstream: Any) -> dict[str, Any]:
    """One `openai` upstream (with `upstream`'s extra keys) and one route to it."""
    return {
        "upstreams": {
            "openai": {"kind": "openai", "base_url": "https://api.example/v1", **upstream}
        },
        "routes": [{"model": "gpt", "targets": [{"upstream": "openai"}]}],
    }


def secret_file(directory: Path, text: str, name: str = "openai_api_key") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def binary_file(directory: Path) -> Path:
    path = directory / "key.bin"
    path.write_bytes(b"\xff\xfe" + CANARY.encode())
    return path


# --- provider keys -----------------------------------------------------------------------------


def test_api_key_file_is_read_and_stripped(tmp_path: Path) -> None:
    key_file = secret_file(tmp_path, f"  {CANARY}\n\n")

    settings = load_settings(write_config(tmp_path, openai_config(api_key_file=str(key_file))))

    key = settings.upstreams["openai"].api_key
    assert key is not None
    assert key.get_secret_value() == CANARY


@pytest.mark.parametrize(
    ("make_path", "says"),
    [
        pytest.param(lambda d: d / "absent", "cannot be read: No such file", id="missing"),
        pytest.param(lambda d: d, "cannot be read: Is a directory", id="unreadable"),
        pytest.param(lambda d: secret_file(d, " \n\t\n"), "is empty", id="empty"),
        pytest.param(lambda d: binary_file(d), "is not UTF-8 text", id="binary"),
    ],
)
def test_unusable_api_key_file_is_an_error_naming_the_field_and_the_path(
    tmp_path: Path, make_path: Any, says: str
) -> None:
    key_file = make_path(tmp_path)
    config = write_config(tmp_path, openai_config(api_key_file=str(key_file)))

    with pytest.raises(ConfigError) as raised:
        load_settings(config)

    text = str(raised.value)
    assert f"upstreams.openai.api_key_file (config file {config})" in text
    assert str(key_file) in text
    assert says in text
    assert CANARY not in text


def test_api_key_file_of_several_lines_is_rejected_without_showing_them(tmp_path: Path) -> None:
    key_file = secret_file(tmp_path, f"{CANARY}\nsecond-line\n")

    with pytest.raises(ConfigError, match="holds several lines") as raised:
        load_settings(write_config(tmp_path, openai_config(api_key_file=str(key_file))))

    assert CANARY not in str(raised.value)
    assert "second-line" not in str(raised.value)


def test_api_key_file_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = secret_file(tmp_path, CANARY)
    monkeypatch.setenv("GATEWAY_UPSTREAMS__OPENAI__API_KEY_FILE", str(key_file))

    settings = load_settings(write_config(tmp_path, openai_config()))

    key = settings.upstreams["openai"].api_key
    assert key is not None
    assert key.get_secret_value() == CANARY


@pytest.mark.parametrize(
    ("in_file", "in_environment", "given"),
    [
        pytest.param(
            {"api_key_env": "TEST_KEY", "api_key_file": "KEY_FILE"},
            {},
            "api_key_env, api_key_file",
            id="env-and-file",
        ),
        pytest.param(
            {"api_key_env": "TEST_KEY"},
            {"GATEWAY_UPSTREAMS__OPENAI__API_KEY": CANARY},
            "api_key, api_key_env",
            id="env-name-and-environment",
        ),
        pytest.param(
            {"api_key_file": "KEY_FILE"},
            {"GATEWAY_UPSTREAMS__OPENAI__API_KEY": CANARY},
            "api_key, api_key_file",
            id="file-and-environment",
        ),
    ],
)
def test_a_provider_key_given_two_ways_is_rejected_naming_both_sources(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    in_file: dict[str, str],
    in_environment: dict[str, str],
    given: str,
) -> None:
    key_file = secret_file(tmp_path, CANARY)
    monkeypatch.setenv("TEST_KEY", CANARY)
    for name, value in in_environment.items():
        monkeypatch.setenv(name, value)
    upstream = {k: str(key_file) if v == "KEY_FILE" else v for k, v in in_file.items()}
    config = write_config(tmp_path, openai_config(**upstream))

    with pytest.raises(ConfigError) as raised:
        load_settings(config)

    text = str(raised.value)
    assert f"the key is given 2 ways ({given})" in text
    assert f"config file {config}" in text
    for name in in_environment:
        assert name in text
    assert CANARY not in text


# --- gateway keys ------------------------------------------------------------------------------


def test_gateway_keys_come_from_a_json_list_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_AUTH__KEYS", f'["{CANARY}", "gw-second"]')

    settings = load_settings()

    assert [key.get_secret_value() for key in settings.auth.keys] == [CANARY, "gw-second"]


def test_keys_file_holds_one_key_per_line_ignoring_blanks_and_comments(tmp_path: Path) -> None:
    keys = secret_file(tmp_path, f"# team A\n{CANARY}\n\n   gw-second  \n# old: gw-revoked\n")

    settings = load_settings(write_config(tmp_path, {"auth": {"keys_file": str(keys)}}))

    assert [key.get_secret_value() for key in settings.auth.keys] == [CANARY, "gw-second"]
    assert settings.auth.keys_file == keys


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param("# nobody yet\n\n", "holds no key", id="only-comments"),
        pytest.param(f"{CANARY} trailing words\n", "line 1 holds spaces", id="spaces"),
    ],
)
def test_unusable_keys_file_is_rejected_without_showing_its_content(
    tmp_path: Path, text: str, says: str
) -> None:
    keys = secret_file(tmp_path, text, name="gateway_keys")
    config = write_config(tmp_path, {"auth": {"keys_file": str(keys)}})

    with pytest.raises(ConfigError) as raised:
        load_settings(config)

    message = str(raised.value)
    assert f"auth.keys_file (config file {config})" in message
    assert says in message
    assert str(keys) in message
    assert CANARY not in message


@pytest.mark.parametrize("bad", ["", "has space"], ids=["empty", "space"])
def test_empty_or_spaced_gateway_key_is_rejected(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("GATEWAY_AUTH__KEYS", f'["{CANARY}", "{bad}"]')

    with pytest.raises(ConfigError) as raised:
        load_settings()

    text = str(raised.value)
    assert "auth.keys[1] (environment variable GATEWAY_AUTH__KEYS)" in text
    assert CANARY not in text


def test_gateway_keys_given_both_ways_are_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = secret_file(tmp_path, "gw-from-file\n", name="gateway_keys")
    monkeypatch.setenv("GATEWAY_AUTH__KEYS", f'["{CANARY}"]')

    with pytest.raises(ConfigError, match=r"given 2 ways \(keys, keys_file\)") as raised:
        load_settings(write_config(tmp_path, {"auth": {"keys_file": str(keys)}}))

    assert "GATEWAY_AUTH__KEYS" in str(raised.value)
    assert CANARY not in str(raised.value)


# --- no literal secrets in the file --------------------------------------------------------------


def test_literal_secrets_in_the_config_file_are_rejected_with_the_alternatives(
    tmp_path: Path,
) -> None:
    config = openai_config(api_key=CANARY)
    config["auth"] = {"keys": [CANARY]}
    path = write_config(tmp_path, config)

    with pytest.raises(ConfigError) as raised:
        load_settings(path)

    problems = {problem.field: problem for problem in raised.value.problems}
    assert set(problems) == {"upstreams.openai.api_key", "auth.keys"}
    assert problems["auth.keys"].source == f"config file {path}"
    assert "api_key_env" in problems["upstreams.openai.api_key"].message
    assert "api_key_file" in problems["upstreams.openai.api_key"].message
    assert "keys_file" in problems["auth.keys"].message
    assert CANARY not in str(raised.value)


def test_literal_secret_is_rejected_alongside_other_problems(tmp_path: Path) -> None:
    config = openai_config(api_key=CANARY)
    config["heartbeat"] = -1

    with pytest.raises(ConfigError) as raised:
        load_settings(write_config(tmp_path, config))

    assert {p.field for p in raised.value.problems} == {"upstreams.openai.api_key", "heartbeat"}


def test_literal_secrets_from_code_and_the_environment_are_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstreams = {"fake": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": CANARY}}
    routes = [{"model": "m", "targets": [{"upstream": "fake"}]}]
    monkeypatch.setenv("GATEWAY_AUTH__KEYS", '["gw-env"]')

    direct = GatewaySettings(upstreams=upstreams, routes=routes)
    loaded = load_settings(upstreams=upstreams, routes=routes)

    for settings in (direct, loaded):
        key = settings.upstreams["fake"].api_key
        assert key is not None
        assert key.get_secret_value() == CANARY
        assert [key.get_secret_value() for key in settings.auth.keys] == ["gw-env"]


# --- secrets never shown -----------------------------------------------------------------------


def test_resolved_secrets_appear_in_no_repr_str_or_dump(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_KEY", CANARY)
    keys = secret_file(tmp_path, f"{CANARY}-gw\n", name="gateway_keys")
    config = openai_config(api_key_env="TEST_KEY")
    config["auth"] = {"keys_file": str(keys)}

    settings = load_settings(write_config(tmp_path, config))

    assert settings.upstreams["openai"].api_key is not None
    assert settings.auth.keys
    for text in (
        repr(settings),
        str(settings),
        str(settings.model_dump()),
        settings.model_dump_json(),
        repr(settings.upstreams["openai"]),
        repr(settings.auth),
    ):
        assert CANARY not in text


def test_validation_error_of_directly_built_settings_hides_the_secret() -> None:
    with pytest.raises(ValidationError) as raised:
        GatewaySettings(upstreams={"x": {"kind": "openai", "api_key": CANARY}}, routes=[])

    assert "base_url is required" in str(raised.value)
    assert CANARY not in str(raised.value)


def test_bad_json_in_a_secret_variable_is_named_but_not_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_AUTH__KEYS", f'["{CANARY}", ')

    with pytest.raises(ConfigError) as raised:
        load_settings()

    text = str(raised.value)
    assert "auth.keys (environment variable GATEWAY_AUTH__KEYS): is not valid JSON" in text
    assert CANARY not in text
