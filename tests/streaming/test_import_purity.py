"""The streaming core is pure asyncio + stdlib: importing it loads no server-side dependency.

Checked in a fresh interpreter, because this test process has long since imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("aiohttp", "pydantic", "pydantic_settings", "prometheus_client", "structlog", "yaml")


def modules_loaded_by(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=50
    )
    return set(json.loads(result.stdout))


@pytest.mark.parametrize(
    ("statement", "module"),
    [
        ("import gateway.streaming", "gateway.streaming"),
        ("from gateway.streaming import *", "gateway.streaming.stream"),
        ("import gateway.errors", "gateway.errors"),
    ],
)
def test_importing_the_streaming_core_loads_no_server_dependency(statement, module):
    loaded = modules_loaded_by(statement)
    assert module in loaded
    leaked = sorted(name for name in loaded if name.split(".")[0] in FORBIDDEN)
    assert leaked == []


def test_the_check_would_notice_a_forbidden_import():
    assert "json" in modules_loaded_by("import json")
    assert "yaml" in modules_loaded_by("import yaml")
