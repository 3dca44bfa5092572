"""The benchmark harness runs end to end: `bench.run --quick` against every kind of target.

A smoke test, not a benchmark: it checks that the one command starts its processes - direct,
the gateway with one worker and with two, through a translating route, with a limited key
counted in a redis-server of its own (and in the process: `--redis`) -, measures every one of
them in scenarios a (latency), b (realistic), c (throughput, on chat and on Responses; the
translating route on chat only) and e (disconnect, every case), and writes a report and a
summary with sane, non-zero figures, issue 15's target rows for every gateway variant, and no
errors. No figure is compared with a speed target here; the targets are checked (and
reported) by `bench/` itself. Without `redis-server` the run leaves the Redis targets out (a
note says so) and their tests skip (unless SSE_GATEWAY_REQUIRE_REDIS_TEST=1). Scenario d and
nginx are left out to keep it short.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.disconnects import CASES
from bench.processes import redis_path
from bench.protocol import APIS, CHAT, MESSAGES
from bench.scenarios import QUICK
from tests.support.redis_server import REQUIRE_ENV

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("direct", "gateway")
MULTI, TRANSLATED = "gateway-w2", "gateway-translated"
KEYED = ("gateway-keyed", "gateway-redis")
REDIS = redis_path() is not None
#: Every target of the run, in the order they are measured (`bench.run --targets` + `--redis`).
ALL = (*TARGETS, MULTI, TRANSLATED, KEYED[0], *(KEYED[1:] if REDIS else ()))


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not REDIS and os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"redis-server is not installed (and {REQUIRE_ENV}=1 requires it)")
    out = tmp_path_factory.mktemp("bench")
    targets = ",".join([*TARGETS, MULTI, TRANSLATED, "gateway-redis"])
    command = [sys.executable, "-m", "bench.run", "--quick", "--targets", targets, "--redis"]
    command += ["--scenarios", "a,b,c,e", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "report.md").is_file()
    return {"json": json.loads((out / "summary.json").read_text()), "report": out / "report.md"}


@pytest.mark.timeout(300)
def test_quick_run_writes_a_report_with_every_scenario_and_target(summary: dict) -> None:
    report = summary["report"].read_text()
    for title in ("## a. latency", "## b. realistic", "## c. throughput", "## e. disconnect"):
        assert title in report
    assert "## Issue 15 targets" in report
    assert "### CPU per event, by API" in report
    scenarios = summary["json"]["scenarios"]
    assert set(scenarios) == {"a", "b", "c", "e"}
    assert set(scenarios["c"]["apis"]) == set(APIS)
    assert set(scenarios["e"]["cases"]) == set(CASES)
    everyone = set(ALL)
    results = {
        "a": (scenarios["a"], everyone),
        "b": (scenarios["b"], everyone),
        **{f"e {name}": (case, everyone) for name, case in scenarios["e"]["cases"].items()},
        **{api: (r, everyone - {TRANSLATED}) for api, r in scenarios["c"]["apis"].items()},
        CHAT.name: (scenarios["c"]["apis"][CHAT.name], everyone),  # the translated: chat only
    }
    for name, (result, expected) in results.items():
        assert set(result["targets"]) == expected, name
        assert all(figures["errors"] == 0 for figures in result["targets"].values()), result
    notes = summary["json"]["meta"]["notes"]
    assert REDIS or any("gateway-redis: redis-server is not installed" in n for n in notes)


@pytest.mark.timeout(300)
def test_issue_targets_have_a_row_per_gateway_variant(summary: dict) -> None:
    variants = {name for name in ALL if name.startswith("gateway")}
    scenarios = summary["json"]["scenarios"]
    rows: dict[str, set[str]] = {}
    for result in scenarios.values():
        for check in result["checks"]:
            if "variant" in check:
                rows.setdefault(check["what"], set()).add(check["variant"])
                assert "nginx" in check  # None here: nginx is not in this run
    assert rows["added TTFB p50"] == variants
    assert rows["proxy CPU"] == variants
    assert rows["events/s vs direct (chat)"] == variants
    for case in CASES:
        assert rows[f"e. {case}: abort -> upstream closed p99, added to direct's"] == variants
    measured = [c for r in scenarios.values() for c in r["checks"] if "variant" in c]
    assert all(c["value"] is not None for c in measured), measured


@pytest.mark.timeout(300)
def test_realistic_measures_every_event_of_every_target_translated_included(
    summary: dict,
) -> None:
    realistic = summary["json"]["scenarios"]["b"]
    per_stream = QUICK.realistic_chunks
    for name, figures in realistic["targets"].items():
        streams = QUICK.rounds * QUICK.realistic_streams
        chunks = MESSAGES.relayed_as(CHAT, per_stream) if name == TRANSLATED else per_stream
        assert figures["events"] == streams * chunks, name
        # Every event's latency (a translated stream: its text deltas, which carry the stamp).
        latencies = chunks - 2 if name == TRANSLATED else chunks
        assert figures["event_latency_ms"]["n"] == streams * latencies, name
        assert figures["event_latency_ms"]["p50"] > 0
    assert realistic["vs_direct"][MULTI]["added_event_p99_ms"] is not None


@pytest.mark.timeout(300)
def test_latency_figures_are_measured_for_every_request(summary: dict) -> None:
    latency = summary["json"]["scenarios"]["a"]
    for figures in latency["targets"].values():
        assert figures["ttfb_ms"]["n"] == QUICK.latency_requests
        assert 0 < figures["ttfb_ms"]["p50"] <= figures["ttfb_ms"]["p99"]
        assert figures["total_ms"]["p50"] >= figures["ttfb_ms"]["p50"]
    assert latency["vs_direct"]["gateway"]["added_ttfb_p50_ms"] is not None


@pytest.mark.timeout(300)
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


@pytest.mark.timeout(300)
def test_throughput_puts_responses_cpu_per_event_next_to_chat(summary: dict) -> None:
    gateway = summary["json"]["scenarios"]["c"]["vs_chat"]["responses"]["gateway"]
    assert gateway["cpu_per_event_ratio"] > 0
    assert len(gateway["cpu_per_event_ratio_rounds"]) == QUICK.rounds
    assert gateway["events_per_s_ratio"] > 0


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", list(CASES))
def test_every_disconnect_of_every_case_is_seen_by_the_upstream(summary: dict, case: str) -> None:
    tries = {
        "streaming": QUICK.disconnect_tries,
        "streaming-rst": QUICK.disconnect_tries,
        "idle": QUICK.idle_abort_tries,
        "idle-rst": QUICK.idle_abort_tries,
        "loaded": QUICK.rounds * QUICK.loaded_abort_tries,
        "all-at-once": QUICK.rounds * QUICK.burst_streams,
    }[case]
    disconnect = summary["json"]["scenarios"]["e"]["cases"][case]
    for name, figures in disconnect["targets"].items():
        assert figures["close_ms"]["n"] == tries, name
        assert figures["close_ms"]["p50"] > 0
        assert figures["close_ms"]["max"] >= figures["close_ms"]["p99"]


@pytest.mark.timeout(300)
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


@pytest.mark.timeout(300)
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
