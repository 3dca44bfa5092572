"""Reading a running gateway's metrics: from its registry, and from `/metrics` as text."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gateway.server.app_state import METRICS
from tests.conftest import RunningGateway


def value(gw: RunningGateway, name: str, **labels: str) -> float:
    """A sample's value in the gateway's registry; 0 when the series does not exist."""
    found = gw.app[METRICS].registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def total(gw: RunningGateway, name: str, **labels: str) -> float:
    """The sum of every sample named `name` whose labels include `labels`."""
    return sum(
        sample.value
        for family in gw.app[METRICS].registry.collect()
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def finished(gw: RunningGateway, count: int = 1) -> None:
    """Wait until `count` requests are recorded: the handler's `finally` may run just after
    the client read the end of its response (a hang guard, not a timing assertion)."""
    async with asyncio.timeout(10):
        while total(gw, "gateway_requests_total") < count:  # noqa: ASYNC110 - nothing to await
            await asyncio.sleep(0.005)


def parse(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]
