"""The benchmark harness runs end to end: `bench.run --quick` against direct and the gateway.

A smoke test, not a benchmark: it checks that the one command starts its processes, measures
scenarios a (latency; with `--redis` also through a keyed gateway, its limit in the process and
in a redis-server of its own), c (throughput, on chat and on Responses; with `--translate` also
chat through a route to an Anthropic upstream) and e (disconnect), and writes a report and a
summary with sane, non-zero figures and no errors. No figure is compared with a speed target
here; the targets are checked (and reported) by `bench/` itself. Without `redis-server` the
run leaves `--redis` out and its tests skip (unless SSE_GATEWAY_REQUIRE_REDIS_TEST=1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.processes import redis_path
from bench.protocol import APIS, CHAT, MESSAGES
from bench.scenarios import QUICK
from tests.support.redis_server import REQUIRE_ENV

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("direct", "gateway")
TRANSLATED = "gateway-translated"
KEYED = ("gateway-keyed", "gateway-redis")
REDIS = redis_path() is not None


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not REDIS and os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"redis-server is not installed (and {REQUIRE_ENV}=1 requires it)")
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "bench.run", "--quick", "--targets", ",".join(TARGETS)]
    command += ["--scenarios", "a,c,e", "--workers", "1", "--translate", "--out", str(out)]
    command += ["--redis"] if REDIS else []
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "report.md").is_file()
    return {"json": json.loads((out / "summary.json").read_text()), "report": out / "report.md"}


@pytest.mark.timeout(180)
def test_quick_run_writes_a_report_with_every_scenario_and_target(summary: dict) -> None:
    report = summary["report"].read_text()
    for title in ("## a. latency", "## c. throughput", "## e. disconnect", "## Issue 6 targets"):
        assert title in report
    assert "### CPU per event, by API" in report
    scenarios = summary["json"]["scenarios"]
    assert set(scenarios) == {"a", "c", "e"}
    assert set(scenarios["c"]["apis"]) == set(APIS)
    expected = {
        "a": {*TARGETS, *(KEYED if REDIS else ())},
        "e": set(TARGETS),
        **{api: set(TARGETS) for api in scenarios["c"]["apis"]},
        CHAT.name: {*TARGETS, TRANSLATED},  # a translating route serves chat clients only
    }
    results = {"a": scenarios["a"], "e": scenarios["e"], **scenarios["c"]["apis"]}
    for name, result in results.items():
        assert set(result["targets"]) == expected[name], name
        assert all(figures["errors"] == 0 for figures in result["targets"].values()), result


@pytest.mark.timeout(180)
def test_latency_figures_are_measured_for_every_request(summary: dict) -> None:
    latency = summary["json"]["scenarios"]["a"]
    for figures in latency["targets"].values():
        assert figures["ttfb_ms"]["n"] == QUICK.latency_requests
        assert 0 < figures["ttfb_ms"]["p50"] <= figures["ttfb_ms"]["p99"]
        assert figures["total_ms"]["p50"] >= figures["ttfb_ms"]["p50"]
    assert latency["vs_direct"]["gateway"]["added_ttfb_p50_ms"] is not None


@pytest.mark.timeout(180)
@pytest.mark.parametrize("api", list(APIS))
def test_throughput_counts_every_event_and_the_gateway_cpu(summary: dict, api: str) -> None:
    throughput = summary["json"]["scenarios"]["c"]["apis"][api]
    expected = QUICK.rounds * QUICK.throughput_streams * QUICK.throughput_chunks
    for name in TARGETS:  # the translated route's events: its own test
        figures = throughput["targets"][name]
        assert figures["events"] == expected
        assert figures["events_per_s"] > 0
    assert throughput["targets"]["gateway"]["cpu_s_per_100k_events"] > 0
    assert throughput["vs_direct"]["gateway"]["events_per_s_ratio"] > 0


@pytest.mark.timeout(180)
def test_throughput_puts_responses_cpu_per_event_next_to_chat(summary: dict) -> None:
    gateway = summary["json"]["scenarios"]["c"]["vs_chat"]["responses"]["gateway"]
    assert gateway["cpu_per_event_ratio"] > 0
    assert len(gateway["cpu_per_event_ratio_rounds"]) == QUICK.rounds
    assert gateway["events_per_s_ratio"] > 0


@pytest.mark.timeout(180)
def test_every_disconnect_is_seen_by_the_upstream(summary: dict) -> None:
    disconnect = summary["json"]["scenarios"]["e"]
    for figures in disconnect["targets"].values():
        assert figures["close_ms"]["n"] == QUICK.disconnect_tries
        assert figures["close_ms"]["p50"] > 0


@pytest.mark.timeout(180)
def test_translated_route_relays_every_event_and_stands_beside_the_passthrough(
    summary: dict,
) -> None:
    throughput = summary["json"]["scenarios"]["c"]
    translated = throughput["apis"][CHAT.name]["targets"][TRANSLATED]
    per_stream = MESSAGES.relayed_as(CHAT, QUICK.throughput_chunks)
    assert per_stream == QUICK.throughput_chunks - 3
    assert translated["events"] == QUICK.rounds * QUICK.throughput_streams * per_stream
    assert translated["cpu_s_per_100k_events"] > 0
    beside = throughput["translated"]
    assert beside["events_per_s"] > 0
    assert beside["passthrough_events_per_s"] > 0
    assert len(beside["events_per_s_ratio_rounds"]) == QUICK.rounds
    assert len(beside["cpu_per_event_ratio_rounds"]) == QUICK.rounds
    assert beside["cpu_us_per_event"] > 0
    assert beside["passthrough_cpu_us_per_event"] > 0
    assert any("(issue 13)" in check["what"] for check in throughput["checks"])
    assert "### Chat translated from Messages" in summary["report"].read_text()


@pytest.mark.timeout(180)
@pytest.mark.skipif(not REDIS, reason="redis-server is not installed")
def test_redis_admission_takes_a_round_trip_per_request_and_stands_beside_the_memory_store(
    summary: dict,
) -> None:
    latency = summary["json"]["scenarios"]["a"]
    for name in KEYED:
        assert latency["targets"][name]["ttfb_ms"]["n"] == QUICK.latency_requests
        assert latency["targets"][name]["cpu_ms_per_request"] > 0
    admission = latency["admission"]
    # Every measured request was admitted by Redis (a fallback - Redis slower than its
    # 50 ms budget on a loaded machine - may take a few of the warm-up's place, no more).
    assert admission["redis_admits"] >= QUICK.latency_requests
    assert admission["redis_server_cpu_ms_per_request"] > 0
    assert admission["added_ttfb_p50_ms"] is not None
    assert any("(issue 14)" in check["what"] for check in latency["checks"])
    assert "### Redis-backed admission" in summary["report"].read_text()
