"""The report's plots (matplotlib, Agg backend; imported only when matplotlib is installed).

- latency / realistic / disconnect: the percentile curve of each target (x: milliseconds,
  log scale; y: percentile), so the added time at p50 and p99 reads off the gap to `direct`;
- throughput: events/s per target and API, one bar per round;
- idle: the proxy's RSS as streams open, per target and run size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["draw_plots"]

_PERCENTILES = [*range(1, 100), 100]


def _percentile_plot(cdf: dict[str, list[float]], title: str, xlabel: str, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4))
    for name, values in cdf.items():
        if values:
            axes.plot([max(v, 1e-3) for v in values], _PERCENTILES[: len(values)], label=name)
    axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("percentile")
    axes.set_yticks([0, 25, 50, 75, 90, 99])
    axes.grid(True, which="both", alpha=0.3)
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _throughput_plot(result: dict[str, Any], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4))
    bars = [
        (f"{name}\n{api}", figures["events_per_s_rounds"], index)
        for api, per_api in result["apis"].items()
        for index, (name, figures) in enumerate(per_api["targets"].items())
    ]
    for position, (_, rounds, color) in enumerate(bars):
        width = 0.8 / max(len(rounds), 1)
        for r, rate in enumerate(rounds):
            axes.bar(position - 0.4 + width * (r + 0.5), rate, width, color=f"C{color}")
    axes.set_xticks(range(len(bars)), [label for label, _, _ in bars], fontsize=7)
    axes.set_ylabel("events/s (one bar per round)")
    axes.grid(True, axis="y", which="both", alpha=0.3)
    axes.set_title("c. throughput: events relayed per second")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _idle_plot(result: dict[str, Any], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4))
    styles = ["-", "--", ":"]
    for s, (size, per_target) in enumerate(result["sizes"].items()):
        for index, (name, figures) in enumerate(per_target.items()):
            curve = figures.get("curve") or []
            if name == "direct" or len(curve) < 2:
                continue
            xs = [point[0] for point in curve]
            ys = [point[1] / 1024 for point in curve]
            axes.plot(xs, ys, styles[s % 3], color=f"C{index}", label=f"{name}, {size} streams")
    axes.set_xlabel("streams open")
    axes.set_ylabel("proxy RSS, MiB")
    axes.grid(True, alpha=0.3)
    axes.set_title("d. memory by open streams")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def draw_plots(scenarios: dict[str, Any], out: Path, names: dict[str, str]) -> list[str]:
    """Draw the plots of the scenarios present; their file names."""
    drawn = []
    titles = {
        "a": ("a. latency: time to first event", "TTFB, ms"),
        "b": ("b. realistic: per-event latency", "upstream send -> client read, ms"),
        "e": ("e. disconnect: client abort -> upstream sees close", "ms"),
    }
    for key, result in scenarios.items():
        path = out / names[key]
        if key in titles and result.get("cdf"):
            _percentile_plot(result["cdf"], *titles[key], path)
        elif key == "c":
            _throughput_plot(result, path)
        elif key == "d":
            _idle_plot(result, path)
        else:
            continue
        drawn.append(names[key])
    return drawn
