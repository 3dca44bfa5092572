"""A real client run as its own process (a Node SDK, another openai-python): its JSON report."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

__all__ = ["run_json_client"]


async def run_json_client(
    *command: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Any:
    """Run `command` to its end and parse what it printed as JSON; a non-zero exit fails the
    test with the client's stderr. The caller bounds it (`asyncio.timeout`): cancelled, it kills
    the process and waits for it."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=env,
    )
    try:
        out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode(errors="replace")
    return json.loads(out)
