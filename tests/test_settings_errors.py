"""Configuration errors name the field and the source of its bad value.

`load_settings` raises one `ConfigError` listing every problem as `field (source): message`,
where the source is the config file (with its path), the environment variable, the flag, a
keyword argument or the default. Parsing failures (bad JSON in a variable) become the same kind
of plain message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.settings import ConfigError, ConfigProblem, Flag, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)


def write_config(directory: Path, config: dict[str, Any]) -> Path:
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def problems_of(raised: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    """field -> source"""
    return {problem.field: problem.source for problem in raised.value.problems}


def test_bad_value_in_the_file_names_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"timeouts": {"idle": -1}, "listen": {"prot": 80}})

    with pytest.raises(ConfigError) as raised:
        load_settings(path)

    assert problems_of(raised) == {
        "timeouts.idle": f"config file {path}",
        "listen.prot": f"config file {path}",
    }


def test_bad_value_in_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_TIMEOUTS__IDLE", "-1")

    with pytest.raises(ConfigError) as raised:
        load_settings(write_config(tmp_path, {"timeouts": {"idle": 5, "total": 60}}))

    assert problems_of(raised) == {"timeouts.idle": "environment variable GATEWAY_TIMEOUTS__IDLE"}


def test_bad_value_from_a_flag_names_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_LISTEN__PORT", "9000")

    with pytest.raises(ConfigError) as raised:
        load_settings(flags=[Flag("--port", "listen.port", 70000)])

    assert problems_of(raised) == {"listen.port": "flag --port"}


def test_bad_keyword_argument_is_named_as_such() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(heartbeat=0)

    assert problems_of(raised) == {"heartbeat": "keyword argument"}


def test_default_routes_to_a_missing_mock_upstream_name_the_default(tmp_path: Path) -> None:
    config = {"upstreams": {"openai": {"kind": "openai", "base_url": "https://api.example/v1"}}}

    with pytest.raises(ConfigError) as raised:
        load_settings(write_config(tmp_path, config))

    first = raised.value.problems[0]
    assert first == ConfigProblem(
        "routes[0].targets[0].upstream",
        "default",
        "routes[0] ('mock') names upstream 'mock', which is not among upstreams: ['openai']",
    )


def test_error_in_a_route_names_the_nested_field_and_the_file(tmp_path: Path) -> None:
    config = {
        "routes": [
            {"model": "a", "targets": [{"upstream": "mock"}]},
            {"model": "b", "targets": [{"upstream": "mock"}], "timeouts": {"total": 0}},
        ]
    }
    path = write_config(tmp_path, config)

    with pytest.raises(ConfigError) as raised:
        load_settings(path)

    assert problems_of(raised) == {"routes[1].timeouts.total": f"config file {path}"}


def test_cross_field_error_names_the_field_it_is_about(tmp_path: Path) -> None:
    config = {"routes": [{"model": "b", "targets": [{"upstream": "opneai"}]}]}
    path = write_config(tmp_path, config)

    with pytest.raises(ConfigError) as raised:
        load_settings(path)

    (problem,) = raised.value.problems
    assert problem.field == "routes[0].targets[0].upstream"
    assert problem.source == f"config file {path}"
    assert "'opneai', which is not among upstreams: ['mock']" in problem.message


def test_value_merged_from_file_and_environment_names_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_UPSTREAMS__OPENAI__MAX_CONNECTIONS", "8")
    path = write_config(tmp_path, {"upstreams": {"openai": {"kind": "openai"}}, "routes": []})

    with pytest.raises(ConfigError) as raised:
        load_settings(path)

    assert problems_of(raised) == {
        "upstreams.openai.base_url": (
            "environment variable GATEWAY_UPSTREAMS__OPENAI__MAX_CONNECTIONS and "
            f"config file {path}"
        )
    }


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        pytest.param("GATEWAY_AUTH__KEYS", '["k1",', "auth.keys", id="nested-list"),
        pytest.param("GATEWAY_ROUTES", "[{", "routes", id="list"),
        pytest.param("GATEWAY_METRICS", "{enabled: true}", "metrics", id="section"),
    ],
)
def test_unparsable_environment_variable_is_a_plain_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as raised:
        load_settings()

    (problem,) = raised.value.problems
    assert problem.field == field
    assert problem.source == f"environment variable {variable}"
    assert problem.message.startswith("is not valid JSON")


def test_every_problem_is_one_line_of_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_HEARTBEAT", "soon")
    path = write_config(tmp_path, {"workers": 0})

    with pytest.raises(ConfigError) as raised:
        load_settings(path)

    lines = str(raised.value).splitlines()
    assert lines[0] == "invalid configuration:"
    assert sorted(lines[1:]) == [
        "  heartbeat (environment variable GATEWAY_HEARTBEAT): "
        "Input should be a valid number, unable to parse string as a number",
        f"  workers (config file {path}): Input should be greater than 0",
    ]
