"""Skip a deployment test whose tools are missing - unless CI says they must be there.

CI installs docker.io, docker-compose, debootstrap and prometheus and sets
`SSE_GATEWAY_REQUIRE_CONTAINER_TEST=1` / `SSE_GATEWAY_REQUIRE_PROMETHEUS_TEST=1`: there a missing
tool fails the test instead of skipping it, so a broken install step cannot pass unnoticed.
"""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = ["missing_tools", "require"]


def missing_tools(*tools: str) -> list[str]:
    return [tool for tool in tools if shutil.which(tool) is None]


def require(condition_failed: str | None, *, env_var: str) -> None:
    """Skip with `condition_failed` as the reason, or fail when `env_var` is "1"."""
    if condition_failed is None:
        return
    if os.environ.get(env_var) == "1":
        pytest.fail(f"{condition_failed} (and {env_var}=1 requires this test to run)")
    pytest.skip(f"{condition_failed}; set {env_var}=1 to make this a failure")
