"""The packages of `gateway` form layers, and imports only point down.

Each package may import from packages of lower layers only (and from itself), so that a new
API, store or transport plugs in below the code that uses it, and nothing in the pure core
learns about the server. The check reads every module's imports (also those inside functions
and under `TYPE_CHECKING`) with `ast`, so it needs no import side effects.
"""

from __future__ import annotations

import ast
from pathlib import Path

import gateway

ROOT = Path(gateway.__file__).parent

#: Lowest first; packages in one layer may not import each other.
LAYERS: list[set[str]] = [
    {"errors"},
    {"streaming"},
    {"settings", "apis", "redaction", "state"},
    {"observability", "transport", "translation"},
    {"providers"},
    {"routing"},
    {"tracing"},
    {"server"},
    {"cli"},
    {"__main__"},
]
LAYER_OF = {package: index for index, layer in enumerate(LAYERS) for package in layer}


def imported_packages(source: str) -> set[str]:
    """The top-level `gateway` packages `source` imports from."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "gateway" and len(parts) > 1:
                found.add(parts[1])
    return found


def violations(package: str, imported: set[str]) -> list[str]:
    """The imports of `package` that do not point to a lower layer (or to itself)."""
    layer = LAYER_OF[package]
    return sorted(
        f"{package} -> {other}"
        for other in imported
        if other != package and LAYER_OF[other] >= layer
    )


def package_of(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    return relative.parts[0]


def test_every_package_of_the_gateway_has_a_layer() -> None:
    packages = {package_of(path) for path in ROOT.rglob("*.py")} - {"__init__"}
    assert packages <= set(LAYER_OF), sorted(packages - set(LAYER_OF))


def test_imports_only_point_to_lower_layers() -> None:
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        package = package_of(path)
        if package == "__init__":
            continue
        imported = imported_packages(path.read_text(encoding="utf-8"))
        problems += [f"{path.relative_to(ROOT)}: {v}" for v in violations(package, imported)]
    assert problems == []


def test_the_check_notices_an_import_pointing_up_or_sideways() -> None:
    up = imported_packages("from gateway.server.app import create_app")
    assert violations("routing", up) == ["routing -> server"]
    sideways = imported_packages("import gateway.state.lease\nimport gateway.apis")
    assert violations("apis", sideways) == ["apis -> state"]
    assert violations("server", imported_packages("from gateway.apis import APIS")) == []
