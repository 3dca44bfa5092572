"""10,000 streams open at once through a two-worker gateway, zero errors, and their memory.

Issue 5: "10,000 concurrent open streams on this 2-core machine with zero errors, and the RSS
figure reported". Four processes: the bench's mock upstream (`bench/upstream.py`), the gateway
as it runs in production, `python -m gateway --workers 2` (`bench.processes.start_gateway`:
one route `m` to the upstream, no heartbeat, a pool of 100,000 upstream connections, log level
warning), the load generator (`tests/load/held_streams.py`) and this test, which watches.

Why two workers: a process may hold 20,000 open files here (the hard limit cannot be raised),
and a proxy holds two sockets per stream (client and upstream). Each worker has its own
listening socket on the port (SO_REUSEPORT), so each holds about 5,000 streams; its own
`limits.max_streams` (10,000, per process) never turns one away. The load generator holds the
10,000 client sockets in a process of its own.

The test: warm the workers up and read the gateway's RSS (supervisor + workers, VmRSS); open
10,000 streams (the role chunk at once, then one chunk every 5 s, far inside the 120 s idle
deadline); once every one has its first event (status 200), check the gateway's own count
(`gateway_active_streams` on `/metrics`, summed over the workers by multiprocess mode) and the
upstream's, and read the RSS again; then the upstream sends the rest of every stream at once
(`GET /_bench/finish`), every stream must end with all its chunks and `[DONE]`, no error event,
no other status, and the gateway's count goes back to 0 with no error recorded.

Nothing is timed (speed and memory targets are `bench/`'s): the timeouts only keep a broken
run from hanging. The memory figures are reported, not asserted: `record_property` (JUnit
XML), a section of the terminal summary (`tests/load/conftest.py`) and `load-streams.json` in
the test's tmp_path, next to the processes' logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.eventloop import uvloop_available
from bench.loadgen import Address, Connection, fetch_json
from bench.processes import Service, start_gateway, start_upstream
from bench.protocol import CLOSES_PATH, FINISH_PATH, StreamShape
from bench.system import ProcessTree, raise_fd_limit
from tests.load.conftest import FIGURES

REPO = Path(__file__).resolve().parents[2]
STREAMS = 10_000
WORKERS = 2
#: Each stream: the role chunk at once, then one every DELAY s; CHUNKS * DELAY (65 s) is far
#: longer than opening them all takes, so none ends before the upstream is told to finish.
CHUNKS, DELAY = 14, 5.0
#: Open files each process needs: a worker holds ~5,000 x 2 sockets, the load generator 10,000.
FILES_NEEDED = 12_000
OPEN_TIMEOUT = 120.0  # seconds for every stream's first event (hang guards, not speed limits)
END_TIMEOUT = 60.0
WARM_CONNECTIONS, WARM_ROUNDS = 16, 5  # 16 connections: the kernel spreads them over both
GATEWAY_ENV = {
    "GATEWAY_LIMITS__MAX_STREAMS": str(STREAMS),  # per worker: never the limit here
    "GATEWAY_DRAIN_GRACE": "1",  # a failed run's leftover streams do not delay the stop
}


@pytest.fixture
def open_files() -> Iterator[int]:
    """This process's open-file limit raised to the hard limit: the services inherit it."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = raise_fd_limit()
    try:
        if soft < FILES_NEEDED:
            pytest.fail(
                f"{STREAMS:,} streams need {FILES_NEEDED:,} open files per process; "
                f"the limit here is {soft:,} (ulimit -Hn)"
            )
        yield soft
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


@pytest.fixture
async def services(
    tmp_path: Path, open_files: int, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Service, Service]]:
    """The mock upstream and the gateway in front of it; both stopped by PID at the end."""
    monkeypatch.chdir(REPO)  # `python -m bench.upstream` imports from the working directory
    upstream = start_upstream(["127.0.0.1"], tmp_path, None, uvloop_available())
    try:
        gateway = await start_gateway(
            "gateway", upstream.address, WORKERS, tmp_path, None, env=GATEWAY_ENV
        )
        try:
            gateway.tree()  # remembers the workers: stop() kills any that outlive the supervisor
            yield upstream, gateway
        finally:
            gateway.stop()
    finally:
        upstream.stop()


@contextlib.asynccontextmanager
async def held_streams(gateway: Address, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """The load generator, opening `STREAMS` streams through `gateway`; killed by PID at exit."""
    argv = ["--port", str(gateway.port), "--streams", str(STREAMS), "--chunks", str(CHUNKS)]
    argv += ["--delay", str(DELAY), "--first-event-timeout", str(OPEN_TIMEOUT)]
    argv += ["--end-timeout", str(END_TIMEOUT)]
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.load.held_streams",
            *argv,
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


async def next_report(
    process: asyncio.subprocess.Process, event: str, limit: float, log: Path
) -> dict[str, Any]:
    """The load generator's next JSON line, which must be `event`."""
    assert process.stdout is not None
    try:
        async with asyncio.timeout(limit):
            line = await process.stdout.readline()
    except TimeoutError:
        pytest.fail(f"no {event!r} report from the load generator within {limit:g} s")
    if not line:
        code = await process.wait()
        pytest.fail(f"the load generator exited ({code}) before {event!r}:\n{tail(log)}")
    report: dict[str, Any] = json.loads(line)
    assert report["event"] == event, report
    return report


async def metric(session: aiohttp.ClientSession, gateway: Address, name: str) -> dict[str, float]:
    """Every sample `name` on the gateway's `/metrics`, by its labels (whichever worker answers,
    the figures are those of all workers)."""
    async with session.get(f"http://{gateway.host}:{gateway.port}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {
        json.dumps(sample.labels, sort_keys=True): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


async def active_streams(session: aiohttp.ClientSession, gateway: Address) -> float:
    return sum((await metric(session, gateway, "gateway_active_streams")).values())


async def warm_up(gateway: Address) -> None:
    """A few streams on each worker, so the baseline RSS is that of a gateway that served, not
    of one that only started."""
    opened = [await Connection.open(gateway) for _ in range(WARM_CONNECTIONS)]
    try:
        for _ in range(WARM_ROUNDS):
            results = await asyncio.gather(*(c.stream(StreamShape(5, 0, 0)) for c in opened))
            assert [r.error for r in results if r.error is not None] == []
    finally:
        for connection in opened:
            connection.close()


def rss_by_process(gateway: Service) -> dict[int, int]:
    """VmRSS (KiB) of the supervisor and of each worker."""
    return {pid: ProcessTree(pid, [pid]).rss_kib() for pid in gateway.tree().pids}


def report_figures(
    record_property: Callable[[str, object], None],
    directory: Path,
    base: dict[int, int],
    held: dict[int, int],
    ramp_s: float,
) -> None:
    """The RSS figures: properties of the test (and the summary line), and a JSON file."""
    figures = {
        "streams": STREAMS,
        "workers": WORKERS,
        "rss_base_kib": sum(base.values()),
        "rss_open_kib": sum(held.values()),
        "kib_per_stream": round((sum(held.values()) - sum(base.values())) / STREAMS, 2),
        "rss_base_kib_by_pid": base,
        "rss_open_kib_by_pid": held,
        "ramp_s": ramp_s,
    }
    (directory / "load-streams.json").write_text(json.dumps(figures, indent=2) + "\n")
    for name in ("rss_base_kib", "rss_open_kib", "kib_per_stream", "ramp_s"):
        record_property(name, figures[name])
    record_property(
        FIGURES,
        f"{STREAMS:,} streams open at once, gateway --workers {WORKERS}: RSS (supervisor + "
        f"workers) {sum(base.values()) / 1024:.1f} MiB after warm-up, "
        f"{sum(held.values()) / 1024:.1f} MiB with all open = "
        f"{figures['kib_per_stream']:.1f} KiB per stream; opened in {ramp_s:.1f} s",
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_ten_thousand_streams_are_held_open_at_once_and_end_without_errors(
    services: tuple[Service, Service],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    upstream, gateway = services
    started = time.monotonic()
    await warm_up(gateway.address)
    await asyncio.sleep(1.0)  # the warm-up's connections closed
    base = rss_by_process(gateway)
    log = tmp_path / "held_streams.log"
    async with aiohttp.ClientSession() as session, held_streams(gateway.address, log) as process:
        opened = await next_report(process, "open", OPEN_TIMEOUT + 60, log)
        assert opened["errors"] == 0, opened
        assert opened["open"] == STREAMS, opened
        assert await active_streams(session, gateway.address) == STREAMS
        assert (await fetch_json(upstream.address, CLOSES_PATH))["active"] == STREAMS
        held = rss_by_process(gateway)

        report_figures(record_property, tmp_path, base, held, opened["ramp_s"])

        finished = await fetch_json(upstream.address, FINISH_PATH)
        assert finished["finished"] == STREAMS
        done = await next_report(process, "done", END_TIMEOUT + 30, log)
        assert done["errors"] == 0, done
        assert done["completed"] == STREAMS, done
        assert await process.wait() == 0

        async with asyncio.timeout(30):  # each worker records a stream just after its [DONE]
            while await active_streams(session, gateway.address):  # noqa: ASYNC110 - a process
                await asyncio.sleep(0.2)
        outcomes = await metric(session, gateway.address, "gateway_requests_total")
        errors = await metric(session, gateway.address, "gateway_errors_total")
    completed = {k: v for k, v in outcomes.items() if json.loads(k)["outcome"] == "completed"}
    requests = STREAMS + WARM_CONNECTIONS * WARM_ROUNDS
    assert sum(completed.values()) == sum(outcomes.values()) == requests, outcomes
    assert sum(errors.values()) == 0, errors
    record_property("wall_s", round(time.monotonic() - started, 1))
