"""The command line's configuration surface: flags, start-up errors, `gateway check-config`.

Most tests call `gateway.cli.main(argv)` in this process, with `serve` (and logging set-up)
replaced by a recorder so nothing listens; a few run `python -m gateway` as a separate process
to see exactly what an operator sees (exit status, stdout, stderr, no traceback).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import gateway.cli as cli
from gateway.settings import GatewaySettings

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "gateway.example.yaml"
CANARY = "sk-canary-0c9f31d2e8ab"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[GatewaySettings]:
    """The settings `gateway` would serve with; nothing is started."""
    calls: list[GatewaySettings] = []
    monkeypatch.setattr(cli, "serve", calls.append)
    monkeypatch.setattr(cli, "configure_logging", lambda *args, **kwargs: None)
    return calls


def write_config(directory: Path, config: dict[str, Any]) -> Path:
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_gateway(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=REPO,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


OPENAI_CONFIG: dict[str, Any] = {
    "upstreams": {
        "openai": {
            "kind": "openai",
            "base_url": "https://api.openai.example/v1",
            "api_key_env": "TEST_OPENAI_KEY",
        },
        "local": {"kind": "openai", "base_url": "http://127.0.0.1:8000/v1"},
    },
    "routes": [
        {
            "model": "gpt-fast",
            "targets": [{"upstream": "openai", "model": "gpt-4o-mini"}],
            "timeouts": {"first_byte": 10, "total": 5000},
            "max_timeouts": {"idle": 30},
        },
        {"model": "llama", "targets": [{"upstream": "local"}]},
    ],
    "timeouts": {"idle": 45},
}


# --- flags -------------------------------------------------------------------------------------


def test_flags_win_over_environment_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[GatewaySettings]
) -> None:
    monkeypatch.setenv("GATEWAY_WORKERS", "7")
    monkeypatch.setenv("GATEWAY_HEARTBEAT", "9")
    config = {"workers": 6, "listen": {"port": 9000}, "metrics": {"listen": {"port": 9100}}}
    argv = ["--config", str(write_config(tmp_path, config)), "--workers", "3"]
    argv += ["--heartbeat", "2.5", "--metrics-host", "0.0.0.0", "--metrics-port", "9464"]

    assert cli.main([*argv, "--port", "9001", "--log-format", "json"]) == 0

    (settings,) = served
    assert settings.workers == 3
    assert settings.heartbeat == 2.5
    assert settings.listen.port == 9001
    assert settings.log.format == "json"
    assert settings.metrics.listen is not None
    assert (settings.metrics.listen.host, settings.metrics.listen.port) == ("0.0.0.0", 9464)


def test_without_flags_or_file_the_gateway_serves_the_defaults(
    served: list[GatewaySettings],
) -> None:
    assert cli.main([]) == 0

    (settings,) = served
    assert settings == GatewaySettings()


def test_invalid_flag_value_exits_2_naming_field_and_flag(
    served: list[GatewaySettings], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--workers", "0"]) == 2

    assert "workers (flag --workers): Input should be greater than 0" in capsys.readouterr().err
    assert served == []


# --- start-up errors, as a separate process ----------------------------------------------------


def test_invalid_environment_stops_start_up_naming_the_variable() -> None:
    result = run_gateway(env={"GATEWAY_TIMEOUTS__IDLE": "-1", "GATEWAY_AUTH__KEYS": '["ok"]'})

    assert result.returncode == 2
    assert result.stderr == (
        "gateway: invalid configuration:\n"
        "  timeouts.idle (environment variable GATEWAY_TIMEOUTS__IDLE): "
        "Input should be greater than 0\n"
    )


def test_unparsable_environment_variable_stops_start_up_without_traceback() -> None:
    result = run_gateway(env={"GATEWAY_AUTH__KEYS": f'["{CANARY}"'})

    assert result.returncode == 2
    assert "auth.keys (environment variable GATEWAY_AUTH__KEYS): is not valid JSON" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert CANARY not in result.stderr + result.stdout


# --- check-config ------------------------------------------------------------------------------


def test_check_config_accepts_the_example_config(tmp_path: Path) -> None:
    keys = tmp_path / "gateway_keys"
    keys.write_text("gw-dummy-key\n")
    env = {
        "OPENAI_API_KEY": "sk-dummy-example",
        "ANTHROPIC_API_KEY": "sk-ant-dummy-example",
        "GATEWAY_AUTH__KEYS_FILE": str(keys),
    }

    result = run_gateway("check-config", "config/gateway.example.yaml", env=env)

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("config/gateway.example.yaml: valid\n")
    assert "key set (env OPENAI_API_KEY)" in out
    assert f"1 gateway key(s), file {keys}" in out
    for upstream in ("openai", "local-vllm", "anthropic", "mock"):
        assert f"\n  {upstream} " in out
    assert "key set (env ANTHROPIC_API_KEY)" in out
    assert "  local -> local-vllm (model meta-llama/Llama-3.1-8B-Instruct)\n" in out
    assert "  claude-sonnet -> anthropic (model claude-sonnet-4-5)\n" in out
    assert "dummy" not in out


def test_check_config_shows_effective_routes_and_key_sources_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", CANARY)
    monkeypatch.setenv("GATEWAY_UPSTREAMS__LOCAL__API_KEY", CANARY)
    path = write_config(tmp_path, OPENAI_CONFIG)

    assert cli.main(["--port", "9001", "check-config", str(path), "--json"]) == 0

    out = capsys.readouterr().out
    assert CANARY not in out
    summary = json.loads(out)
    assert summary["listen"] == "127.0.0.1:9001"  # flags apply to check-config too
    assert summary["upstreams"]["openai"]["key"] == {"set": True, "source": "env TEST_OPENAI_KEY"}
    assert summary["upstreams"]["local"]["key"] == {
        "set": True,
        "source": "env GATEWAY_UPSTREAMS__LOCAL__API_KEY",
    }
    fast, llama = summary["routes"]
    assert fast["targets"] == [{"upstream": "openai", "model": "gpt-4o-mini"}]
    # route override (first_byte), global (idle), default (connect), clamped to ceiling (total)
    assert fast["timeouts"] == {
        "connect": 5.0,
        "first_byte": 10,
        "first_token": None,
        "idle": 30,
        "total": 3600,
    }
    assert fast["max_timeouts"] == {
        "connect": 30,
        "first_byte": 600,
        "first_token": None,
        "idle": 30,
        "total": 3600,
    }
    assert llama["targets"] == [{"upstream": "local", "model": "llama"}]
    assert llama["timeouts"] == {
        "connect": 5.0,
        "first_byte": 60.0,
        "first_token": None,
        "idle": 45,
        "total": 600.0,
    }


def test_check_config_prints_key_file_sources_and_unset_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "openai_api_key"
    key_file.write_text(CANARY)
    config = yaml.safe_load(yaml.safe_dump(OPENAI_CONFIG))
    config["upstreams"]["openai"] = {
        "kind": "openai",
        "base_url": "https://api.openai.example/v1",
        "api_key_file": str(key_file),
    }

    assert cli.main(["check-config", str(write_config(tmp_path, config))]) == 0

    out = capsys.readouterr().out
    assert f"key set (file {key_file})" in out
    assert re.search(r"\n  local +openai +http://127\.0\.0\.1:8000/v1 +key not set\n", out)
    assert "auth       off" in out
    assert "  gpt-fast -> openai (model gpt-4o-mini)\n" in out
    assert "connect 5 [30], first_byte 10 [600], idle 30 [30], total 3600 [3600]" in out
    assert CANARY not in out


def test_check_config_of_an_invalid_file_exits_2_naming_field_and_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_TIMEOUTS__IDLE", "0")
    path = write_config(tmp_path, {"routes": [{"model": "m", "targets": [{"upstream": "x"}]}]})

    assert cli.main(["check-config", str(path)]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "gateway: invalid configuration:\n"
        "  timeouts.idle (environment variable GATEWAY_TIMEOUTS__IDLE): "
        "Input should be greater than 0\n"
    )


def test_check_config_json_reports_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, {"upstreams": {"a": {"kind": "openai", "api_key": CANARY}}})

    assert cli.main(["check-config", str(path), "--json"]) == 2

    out = capsys.readouterr().out
    assert CANARY not in out
    report = json.loads(out)
    assert report["valid"] is False
    assert {problem["field"] for problem in report["problems"]} == {
        "upstreams.a.api_key",
        "upstreams.a.base_url",
    }
    assert {problem["source"] for problem in report["problems"]} == {f"config file {path}"}


def test_check_config_of_a_missing_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["check-config", str(tmp_path / "absent.yaml")]) == 2

    assert "config file not found" in capsys.readouterr().err


def test_check_config_refuses_a_second_file_through_config(tmp_path: Path) -> None:
    path = str(write_config(tmp_path, {}))

    with pytest.raises(SystemExit) as raised:
        cli.main(["--config", path, "check-config", path])

    assert raised.value.code == 2
