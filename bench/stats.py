"""Summaries of samples: nearest-rank percentiles, medians of per-round ratios."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence

__all__ = ["median", "percentiles", "rounded"]

PERCENTILES = (50, 90, 99)


def percentiles(values: Iterable[float], scale: float = 1.0) -> dict[str, float | int | None]:
    """`n`, `p50`, `p90`, `p99`, `max` (nearest rank) and `mean` of `values` times `scale`."""
    ordered = sorted(values)
    n = len(ordered)
    summary: dict[str, float | int | None] = {"n": n}
    for p in PERCENTILES:
        summary[f"p{p}"] = ordered[max(0, math.ceil(p / 100 * n) - 1)] * scale if n else None
    summary["max"] = ordered[-1] * scale if n else None
    summary["mean"] = statistics.fmean(ordered) * scale if n else None
    return summary


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
