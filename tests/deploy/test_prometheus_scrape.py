"""A real Prometheus (Debian's package, outside containers) scrapes a real gateway.

The gateway runs in-process on 127.0.0.1 with the built-in mock. A few requests go through it -
completed (`mock`), an upstream error (`mock-500`), a cut stream (`mock-cut`) and a client that
hangs up mid-stream (`mock-slow`) - then:

- `promtool check metrics` lints the `/metrics` exposition (no problem may be reported);
- `prometheus` (temp config, temp TSDB, 127.0.0.1:<free port>) scrapes the gateway every
  second until it holds a non-zero `gateway_requests_total`;
- EVERY PromQL expression of the Grafana dashboard is evaluated through `/api/v1/query`
  (Grafana variables substituted) and must succeed; each metric it names must be declared by
  the gateway's exposition, the labels it matches or groups on must exist on those metrics, and
  an expression whose metrics all have samples must return data.

Prometheus is stopped by its PID in a finally. Skipped if prometheus/promtool are not installed,
unless SSE_GATEWAY_REQUIRE_PROMETHEUS_TEST=1 (CI), which makes that a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from tests.conftest import StartGateway
from tests.deploy.dashboard import (
    Exposition,
    PanelQuery,
    dashboard_queries,
    grouping_labels,
    metric_names,
    selector_labels,
    substitute,
)
from tests.deploy.prerequisites import missing_tools, require

T = TypeVar("T")
REQUIRE_ENV = "SSE_GATEWAY_REQUIRE_PROMETHEUS_TEST"
READY_WITHIN = 30.0
SCRAPED_WITHIN = 30.0
#: Values for the dashboard's Grafana variables: a route the requests below used, so that a
#: `route=~"$route"` matcher on a metric without a route label returns nothing and is caught.
VARIABLES = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m", "route": "mock"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def tools() -> None:
    missing = missing_tools("prometheus", "promtool")
    require(f"not installed: {', '.join(missing)}" if missing else None, env_var=REQUIRE_ENV)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session


async def _chat(http: aiohttp.ClientSession, url: str, model: str) -> int:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(f"{url}/v1/chat/completions", json=body) as response:
        await response.read()
        return response.status


async def _hang_up_mid_stream(http: aiohttp.ClientSession, url: str) -> None:
    body = {"model": "mock-slow", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    response = await http.post(f"{url}/v1/chat/completions", json=body)
    await response.content.readany()  # the first event: the stream is under way
    response.close()  # drops the connection


async def _metrics(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(f"{url}/metrics") as response:
        assert response.status == 200, await response.text()
        return await response.text()


async def _until(
    check: Callable[[], Awaitable[T | None]], within: float, what: str, interval: float = 0.25
) -> T:
    """The first truthy value `check()` returns, polling for at most `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"{what}: not within {within:.0f} s")


class Prometheus:
    """`prometheus` started for one test, on 127.0.0.1, with its own config and TSDB."""

    def __init__(self, process: asyncio.subprocess.Process, url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    @classmethod
    async def start(cls, directory: Path, target: str) -> Prometheus:
        config = directory / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: sse-gateway\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
        )
        port = _free_port()
        log = directory / "prometheus.log"
        with log.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
            )
        return cls(process, f"http://127.0.0.1:{port}", log)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    async def wait_until_scraped(self, http: aiohttp.ClientSession) -> float:
        """Ready, holding `gateway_requests_total` (returned), and 3 scrapes deep (rate())."""

        async def ready() -> bool:
            assert self.process.returncode is None, self.log_tail()
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{self.url}/-/ready") as response:
                    return response.status == 200
            return False

        async def requests() -> float | None:
            return await self.scalar(http, "sum(gateway_requests_total)")

        async def three_scrapes() -> bool:
            count = await self.scalar(http, 'count_over_time(up{job="sse-gateway"}[1m])')
            return count is not None and count >= 3

        await _until(ready, READY_WITHIN, "prometheus ready")
        scraped = await _until(requests, SCRAPED_WITHIN, "gateway_requests_total scraped")
        await _until(three_scrapes, SCRAPED_WITHIN, "three scrapes")
        return scraped

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])

    async def query(self, http: aiohttp.ClientSession, expr: str) -> dict[str, Any]:
        async with http.get(f"{self.url}/api/v1/query", params={"query": expr}) as response:
            answer: dict[str, Any] = json.loads(await response.text())
            return answer

    async def scalar(self, http: aiohttp.ClientSession, expr: str) -> float | None:
        answer = await self.query(http, expr)
        assert answer["status"] == "success", answer
        result = answer["data"]["result"]
        return float(result[0]["value"][1]) if result else None


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("tools")
async def test_prometheus_scrapes_gateway_and_evaluates_every_dashboard_query(
    start_gateway: StartGateway, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await start_gateway()
    exposition_text = await _exposition_after_traffic(http, gw.url)
    lint = await _promtool_check_metrics(exposition_text)
    assert not lint, f"promtool check metrics:\n{lint}"

    exposition = Exposition.parse(exposition_text)
    queries = dashboard_queries()
    assert len(queries) >= 10
    prometheus = await Prometheus.start(tmp_path, gw.url.removeprefix("http://"))
    try:
        requests = await prometheus.wait_until_scraped(http)
        assert requests >= 3
        assert await prometheus.scalar(http, 'up{job="sse-gateway"}') == 1
        failures: list[str] = []
        for query in queries:
            failures.extend(_exposition_problems(query, exposition))
            failures.extend(await _evaluation_problems(query, prometheus, http, exposition))
        assert not failures, "\n".join([*failures, f"exposition:\n{exposition_text}"])
    finally:
        await prometheus.stop()


async def _exposition_after_traffic(http: aiohttp.ClientSession, url: str) -> str:
    """/metrics after a completed, a failed, a cut and an abandoned stream."""
    assert await _chat(http, url, "mock") == 200
    assert await _chat(http, url, "mock-500") == 502
    assert await _chat(http, url, "mock-cut") == 200  # committed, then an error event
    await _hang_up_mid_stream(http, url)

    async def disconnect_recorded() -> str | None:
        text = await _metrics(http, url)
        return text if "gateway_client_disconnects_total{" in text else None

    return await _until(disconnect_recorded, 10, "client disconnect in /metrics")


async def _promtool_check_metrics(exposition: str) -> str:
    """promtool's complaints about the exposition (empty when it has none)."""
    lint = await asyncio.create_subprocess_exec(
        "promtool",
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(lint.communicate(exposition.encode()), 30)
    text = output.decode().strip()
    return text if lint.returncode == 0 else f"exit status {lint.returncode}\n{text}"


async def _evaluation_problems(
    query: PanelQuery,
    prometheus: Prometheus,
    http: aiohttp.ClientSession,
    exposition: Exposition,
) -> list[str]:
    """Prometheus must accept the expression, and return data when its metrics have samples."""
    try:
        expr = substitute(query.expr, VARIABLES)
    except KeyError as exc:
        return [f"{query}: {exc.args[0]}"]
    answer = await prometheus.query(http, expr)
    if answer.get("status") != "success":
        return [f"{query}: {answer.get('errorType')}: {answer.get('error')}"]
    sampled = all(exposition.has_samples(name) for name in metric_names(query.expr))
    if sampled and not answer["data"]["result"]:
        return [f"{query}: no data, though all its metrics have samples"]
    return []


#: Labels Prometheus itself gives every scraped series (the target's): per-replica panels group
#: by `instance`, which no exposition carries.
TARGET_LABELS = frozenset({"instance", "job"})


def _exposition_problems(query: PanelQuery, exposition: Exposition) -> list[str]:
    """What the expression needs from the gateway's exposition and does not find there."""
    problems: list[str] = []
    names = metric_names(query.expr)
    undeclared = sorted(name for name in names if name not in exposition.declared)
    if undeclared:
        problems.append(f"{query}: not in the gateway's exposition: {undeclared}")
    for name, labels in selector_labels(query.expr).items():
        known = exposition.sample_labels.get(name)
        if known is not None and not labels <= known:
            problems.append(f"{query}: {name} has no label {sorted(labels - known)}")
    if names and all(exposition.has_samples(name) for name in names):
        available = frozenset().union(*(exposition.sample_labels[name] for name in names))
        missing = grouping_labels(query.expr) - {"le", *TARGET_LABELS} - available
        if missing:
            problems.append(f"{query}: groups by labels its metrics lack: {sorted(missing)}")
    return problems
