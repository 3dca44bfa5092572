"""The benchmark harness runs end to end: `bench.run --quick` against direct and the gateway.

A smoke test, not a benchmark: it checks that the one command starts its processes, measures
scenarios a (latency), c (throughput, on chat and on Responses) and e (disconnect), and writes
a report and a summary with sane, non-zero figures and no errors. No figure is compared with a
speed target here; the targets are checked (and reported) by `bench/` itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.protocol import APIS
from bench.scenarios import QUICK

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("direct", "gateway")


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "bench.run", "--quick", "--targets", ",".join(TARGETS)]
    command += ["--scenarios", "a,c,e", "--workers", "1", "--out", str(out)]
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
    per_target = [scenarios["a"], scenarios["e"], *scenarios["c"]["apis"].values()]
    for result in per_target:
        assert set(result["targets"]) == set(TARGETS)
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
    for figures in throughput["targets"].values():
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
