"""The bench's own set-up: what the harness uses that the project does not depend on.

    python -m bench.install [--dry-run]

- nginx (the reference proxy), from Debian's `nginx-light` with apt-get, when it is missing
  and this runs as root on a Debian-like machine (otherwise it says how to get it);
- uvloop (a cheaper loop for the upstream and the load generator), matplotlib (the plots),
  py-spy and pyinstrument (profiles), with pip into this interpreter's environment.

Everything is optional: `bench.run` works without any of it (no nginx column, the stdlib loop,
no plots), and says so in its report.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys

from bench.processes import nginx_path

__all__ = ["main", "missing_python_packages"]

_PYTHON_PACKAGES = {
    "uvloop": "uvloop",
    "matplotlib": "matplotlib",
    "py-spy": None,
    "pyinstrument": "pyinstrument",
}


def missing_python_packages() -> list[str]:
    """The optional packages this interpreter lacks (a module, or a command beside it)."""
    here = os.path.dirname(sys.executable)
    return [
        package
        for package, module in _PYTHON_PACKAGES.items()
        if (
            importlib.util.find_spec(module) is None
            if module
            else not shutil.which(package, path=here)
        )
    ]


def _run(command: list[str], dry_run: bool) -> int:
    print("$", " ".join(command), flush=True)
    return 0 if dry_run else subprocess.call(command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.install")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    status = 0
    if nginx_path() is None:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            if not args.dry_run:
                subprocess.call(["apt-get", "update", "-q"], env=env)
            status |= _run(["apt-get", "install", "-y", "-q", "nginx-light"], args.dry_run)
        else:
            print("nginx is missing: install it (e.g. `sudo apt-get install nginx-light`)")
    missing = missing_python_packages()
    if missing:
        status |= _run([sys.executable, "-m", "pip", "install", "-q", *missing], args.dry_run)
    if status == 0:
        print("bench set-up done: nginx", nginx_path() or "missing", "| python packages ok")
    return status


if __name__ == "__main__":
    sys.exit(main())
