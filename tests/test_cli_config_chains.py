"""`gateway check-config` on routes with chains: every target with its own options, and each
route's effective retry policy (built-in < global `retry` < the route's) and error-code lists."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

import gateway.cli as cli

CONFIG: dict[str, Any] = {
    "upstreams": {
        "a": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"},
        "b": {"kind": "openai", "base_url": "http://127.0.0.1:10/v1"},
    },
    "retry": {"attempts": 4, "retry_after_max": 5},
    "routes": [
        {
            "model": "gpt-*",
            "targets": [
                {"upstream": "a", "max_streams": 10, "timeouts": {"first_byte": 20}},
                {"upstream": "b", "model": "big", "prefill": True},
            ],
            "retry": {"attempts": 2, "backoff_max": 4},
            "failover_on": ["context_length_exceeded"],
            "propagate": ["content_policy_violation"],
        }
    ],
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)


def check(tmp_path: Path, *flags: str) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    assert cli.main(["check-config", str(path), *flags]) == 0
    return str(path)


def test_check_config_shows_each_targets_options_and_the_routes_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check(tmp_path, "--json")
    (route,) = json.loads(capsys.readouterr().out)["routes"]
    assert route["targets"] == [
        {"upstream": "a", "model": None, "timeouts": {"first_byte": 20}, "max_streams": 10},
        {"upstream": "b", "model": "big", "prefill": True},
    ]
    assert route["retry"] == {
        "attempts": 2,
        "backoff_initial": 0.5,
        "backoff_max": 4,
        "retry_after_max": 5,
    }
    assert route["failover_on"] == ["context_length_exceeded"]
    assert route["propagate"] == ["content_policy_violation"]
    assert route["continuations"] == 2  # the default, with a target that declares prefill


def test_check_config_prints_the_chain_on_one_line_and_the_policy_below(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check(tmp_path)
    out = capsys.readouterr().out
    chain = "a (the client's model, first_byte 20, max_streams 10), b (model big, prefill)"
    assert f"  gpt-* -> {chain}\n" in out
    assert (
        "      retry: 2 call(s) per target, backoff 0.5-4 s, hints up to 5 s; "
        "failover_on context_length_exceeded; propagate content_policy_violation; "
        "up to 2 continuation(s)\n"
    ) in out
