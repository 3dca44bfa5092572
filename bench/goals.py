"""Issue 15's targets: one check per gateway variant, with nginx's figure beside it.

A check is a JSON-able dict: `what`, `value` (the measured figure), `limit` (`<= 0.3 ms`),
`met` (None: not measured), and for an issue-15 row the `variant` it measures (`gateway`,
`gateway-w2`, `gateway-translated`, `gateway-redis`, ...) and `nginx`: nginx's figure of the
same kind from the same run (None without nginx), for comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from bench.stats import rounded

__all__ = ["check", "is_gateway", "per_variant"]

Result = dict[str, Any]


def check(
    what: str, value: float | None, limit: float, unit: str, at_least: bool = False
) -> Result:
    """`value` against `limit` (`at_least`: a floor, else a ceiling)."""
    met = None if value is None else (value >= limit if at_least else value <= limit)
    sign = ">=" if at_least else "<="
    return {"what": what, "value": rounded(value), "limit": f"{sign} {limit:g} {unit}", "met": met}


def is_gateway(name: str) -> bool:
    """Whether target `name` is a gateway variant (not `direct`, not `nginx`)."""
    return name == "gateway" or name.startswith("gateway-")


def per_variant(
    what: str,
    names: Iterable[str],
    figure: Callable[[str], float | None],
    limit: float,
    unit: str,
    at_least: bool = False,
) -> list[Result]:
    """One check of `figure` per gateway variant among `names`, nginx's figure beside it."""
    names = list(names)
    nginx = rounded(figure("nginx")) if "nginx" in names else None
    return [
        {**check(what, figure(name), limit, unit, at_least), "variant": name, "nginx": nginx}
        for name in names
        if is_gateway(name)
    ]
