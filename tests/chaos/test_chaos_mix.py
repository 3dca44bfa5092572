"""The chaos suite: a seeded random mix of every upstream fault and client behaviour, many
requests at once through one real gateway, each request checked against the contract, the
gateway's metrics checked against the requests sent, and nothing left unclosed.

`SSE_GATEWAY_CHAOS_SEED` fixes the seed (by default a new one each run; a failure names it),
`SSE_GATEWAY_CHAOS_REQUESTS` the number of requests.
"""

from __future__ import annotations

import os

import pytest

from tests.chaos.log_tally import LogTally
from tests.chaos.mix import TrafficMix, chaos_settings, check_totals, dead_port
from tests.chaos.plans import seed_from_environment
from tests.chaos.resources import LeakWatch
from tests.conftest import StartGateway
from tests.support.fake_upstream import FakeUpstream

REQUESTS = int(os.environ.get("SSE_GATEWAY_CHAOS_REQUESTS") or 2000)
CONCURRENCY = 48


@pytest.mark.timeout(max(120, REQUESTS // 10))
async def test_random_mix_of_faults_and_clients_keeps_every_promise(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    seed = seed_from_environment()
    print(f"chaos seed {seed} (SSE_GATEWAY_CHAOS_SEED={seed} replays it)")
    with dead_port() as refused, LogTally().installed() as tally, LeakWatch() as leaks:
        gw = await start_gateway(None, **chaos_settings(upstream, refused))
        mix = TrafficMix(gw, upstream, tally, seed)
        report = await mix.run(range(REQUESTS), CONCURRENCY)
        totals = check_totals(gw, tally, mix)
    assert not report.violation_count, report.failure("requests broke the contract")
    assert not totals, report.failure(f"the totals disagree: {totals}")
    assert not leaks.found, report.failure(f"leaks: {leaks.found[:5]}")
