#!/usr/bin/env python3
"""The project's two entry points for a fresh machine that has only Python >= 3.11.

    python3 dev.py run    start the gateway on 127.0.0.1:8080 (built-in mock provider by default)
    python3 dev.py test   run the whole test suite (plus ruff and mypy --strict)

Both create `.venv` and install the project into it the first time (and again whenever
pyproject.toml changes), then run inside it. Extra arguments are passed through.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed"


def ensure_venv() -> None:
    """Create the virtualenv and install the project with its dev extras, once per pyproject."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    print("installing sse-gateway and its dev dependencies into .venv ...", flush=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test", "setup"}:
        print(__doc__, file=sys.stderr)
        return 2
    ensure_venv()
    command, rest = argv[0], argv[1:]
    python = str(BIN / "python")
    if command == "setup":
        return 0
    if command == "run":
        return subprocess.call([python, "-m", "gateway", *rest], cwd=ROOT)
    checks = [
        [python, "-m", "pytest", *rest],
        [python, "-m", "ruff", "check", "."],
        [python, "-m", "mypy", "--strict", "gateway"],
    ]
    for check in checks:
        print("$", " ".join(check[2:]), flush=True)
        code = subprocess.call(check, cwd=ROOT)
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
