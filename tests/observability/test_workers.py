"""Several worker processes: metrics stay correct across them, and a dead worker is replaced.

A real `python -m gateway` with `GATEWAY_WORKERS=2` on the built-in mock: requests are spread
over both workers (each logs its index), every scrape - whichever worker answers it - reports
the total of both, a worker killed with SIGKILL is replaced without losing the counts, and
SIGTERM stops the supervisor and its workers with status 0. Every process is stopped by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.observability.scrape import parse

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 60
BODY = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Gateway:
    process: asyncio.subprocess.Process
    url: str
    log: Path

    def records(self) -> list[dict[str, Any]]:
        text = self.log.read_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def workers(self) -> dict[int, int]:
        """worker index -> pid of its latest process, from the supervisor's lines."""
        started = [r for r in self.records() if r["event"] == "worker_started"]
        return {r["worker"]: r["pid"] for r in started}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    env.update(GATEWAY_WORKERS="2", GATEWAY_LISTEN__PORT=str(port), GATEWAY_LOG__FORMAT="json")
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", cwd=REPO, env=env, stdout=out, stderr=out
        )
    gw = Gateway(process, f"http://127.0.0.1:{port}", log)
    try:
        yield gw
    finally:
        if process.returncode is None:
            process.kill()  # the test failed before its own SIGTERM; workers exit on EOF
            await process.wait()
        for pid in gw.workers().values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def wait_until(condition: Any, what: str, limit: float = 20.0) -> None:
    """Poll `condition` (a hang guard, not a timing assertion)."""
    async with asyncio.timeout(limit):
        while not await condition():  # noqa: ASYNC110 - another process: nothing to await
            await asyncio.sleep(0.05)


async def served_total(url: str) -> float:
    """`gateway_requests_total` summed, from one scrape on a new connection."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as s, s.get(f"{url}/metrics") as r:
        text = await r.text()
    return sum(x.value for x in parse(text) if x.name == "gateway_requests_total")


async def healthy(url: str) -> bool:
    with contextlib.suppress(aiohttp.ClientError):
        async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as r:
            return r.status == 200
    return False


@pytest.mark.timeout(90)
async def test_metrics_are_aggregated_across_workers_and_survive_a_worker_death(
    gateway: Gateway,
) -> None:
    await wait_until(lambda: healthy(gateway.url), "the gateway to answer /healthz")
    await wait_until(lambda: _true(len(gateway.workers()) == 2), "two workers")
    connector = aiohttp.TCPConnector(force_close=True)  # a new connection, maybe a new worker
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            async with session.post(f"{gateway.url}/v1/chat/completions", json=BODY) as r:
                assert r.status == 200
                await r.read()

        for _ in range(REQUESTS // 10):
            await asyncio.gather(*(one() for _ in range(10)))

    async def recorded() -> bool:
        done = [r for r in gateway.records() if r["event"] == "request_finished"]
        return len(done) == REQUESTS

    await wait_until(recorded, "every request's log line")
    served_by = {r["worker"] for r in gateway.records() if r["event"] == "request_finished"}
    assert served_by == {0, 1}, "both workers should have served requests"
    for _ in range(6):  # any worker answers for all of them
        assert await served_total(gateway.url) == REQUESTS

    victim = gateway.workers()[1]
    os.kill(victim, signal.SIGKILL)
    await wait_until(lambda: _true(gateway.workers()[1] != victim), "worker 1 to be replaced")
    await wait_until(lambda: healthy(gateway.url), "the replaced gateway to answer")
    for _ in range(6):
        assert await served_total(gateway.url) == REQUESTS
    assert [r for r in gateway.records() if r["event"] == "worker_died"]

    pids = list(gateway.workers().values())
    gateway.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(20):
        assert await gateway.process.wait() == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def _true(value: bool) -> bool:
    return value


@pytest.mark.timeout(60)
async def test_workers_stop_when_their_supervisor_is_killed(gateway: Gateway) -> None:
    """However the supervisor ends (here SIGKILL, no chance to clean up), no worker outlives
    it: each sees its pipe from the supervisor close, drains and exits."""
    await wait_until(lambda: healthy(gateway.url), "the gateway to answer /healthz")
    await wait_until(lambda: _true(len(gateway.workers()) == 2), "two workers")
    pids = list(gateway.workers().values())
    gateway.process.kill()
    await gateway.process.wait()

    async def all_gone() -> bool:
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            return False
        return True

    await wait_until(all_gone, "the orphaned workers to exit")
    assert not await healthy(gateway.url)
