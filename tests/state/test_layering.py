"""`gateway.state` depends on nothing above it: routing, server and providers import it, never
the other way (nor does it load aiohttp). Checked in a fresh interpreter, because this test
process has long since imported everything."""

from __future__ import annotations

import json
import subprocess
import sys

ABOVE = ("gateway.routing", "gateway.server", "gateway.providers", "gateway.observability")
FOREIGN = ("aiohttp", "prometheus_client", "structlog")


def modules_loaded_by(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=50
    )
    return set(json.loads(result.stdout))


def test_importing_the_state_package_loads_nothing_above_it() -> None:
    loaded = modules_loaded_by("from gateway.state import *")

    assert "gateway.state.memory" in loaded
    above = sorted(name for name in loaded if name.startswith(ABOVE))
    foreign = sorted(name for name in loaded if name.split(".")[0] in FOREIGN)
    assert (above, foreign) == ([], [])


def test_the_check_would_notice_a_module_above() -> None:
    assert "gateway.routing" in modules_loaded_by("import gateway.routing")
