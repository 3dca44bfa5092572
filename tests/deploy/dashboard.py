"""The Grafana dashboard's PromQL, read the way a test needs it.

`dashboard_queries()` lists every target expression of every panel (rows included);
`substitute()` replaces the Grafana variables the dashboard uses with concrete values (and
fails on any it does not know, so a new variable cannot slip through unevaluated);
`metric_names()`, `selector_labels()` and `grouping_labels()` pull out what an expression
depends on, to compare with the gateway's exposition (`Exposition`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "DASHBOARD",
    "Exposition",
    "PanelQuery",
    "dashboard_panels",
    "dashboard_queries",
    "grouping_labels",
    "metric_names",
    "selector_labels",
    "substitute",
]

DASHBOARD = Path(__file__).resolve().parents[2] / "config/grafana/dashboards/sse-gateway.json"

_METRIC = re.compile(r"\bgateway_[a-z0-9_]+\b")
_SELECTOR = re.compile(r"\b(gateway_[a-z0-9_]+)\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_VARIABLE = re.compile(r"\$\{?(\w+)(?::\w+)?\}?")


@dataclass(frozen=True, slots=True)
class PanelQuery:
    panel: str
    ref_id: str
    expr: str

    def __str__(self) -> str:
        return f"panel {self.panel!r} target {self.ref_id} ({self.expr})"


def dashboard_panels(path: Path = DASHBOARD) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows; rows themselves left out."""
    found: list[dict[str, Any]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            if panel.get("type") == "row":
                walk(panel.get("panels", []))
            else:
                found.append(panel)

    walk(json.loads(path.read_text())["panels"])
    return found


def dashboard_queries(path: Path = DASHBOARD) -> list[PanelQuery]:
    return [
        PanelQuery(panel["title"], target.get("refId", "?"), target["expr"])
        for panel in dashboard_panels(path)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def substitute(expr: str, values: dict[str, str]) -> str:
    """`expr` with each `$name` / `${name}` / `${name:format}` replaced by `values[name]`."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"unknown dashboard variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def metric_names(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def selector_labels(expr: str) -> dict[str, set[str]]:
    """For each metric selector `name{...}`, the label names its matchers use."""
    labels: dict[str, set[str]] = {}
    for name, matchers in _SELECTOR.findall(expr):
        labels.setdefault(name, set()).update(_MATCHER_LABEL.findall(matchers))
    return labels


def grouping_labels(expr: str) -> set[str]:
    """Labels named in `by (...)` / `without (...)` clauses."""
    return {
        label.strip()
        for group in _GROUPING.findall(expr)
        for label in group.split(",")
        if label.strip()
    }


@dataclass(frozen=True, slots=True)
class Exposition:
    """What a /metrics text exposition declares (names with their series suffixes) and which
    label names its samples carry."""

    declared: frozenset[str]
    sample_labels: dict[str, frozenset[str]]

    @classmethod
    def parse(cls, text: str) -> Exposition:
        declared: set[str] = set()
        sample_labels: dict[str, set[str]] = {}
        for family in text_string_to_metric_families(text):
            suffixes = {
                "counter": ("_total",),
                "histogram": ("", "_bucket", "_sum", "_count"),
                "summary": ("", "_sum", "_count"),
            }.get(family.type, ("",))
            declared.update(family.name + suffix for suffix in suffixes)
            for sample in family.samples:
                declared.add(sample.name)
                sample_labels.setdefault(sample.name, set()).update(sample.labels)
        return cls(
            frozenset(declared),
            {name: frozenset(labels) for name, labels in sample_labels.items()},
        )

    def has_samples(self, name: str) -> bool:
        return name in self.sample_labels
