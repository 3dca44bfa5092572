"""The fleet end to end: deploy/replicas/docker-compose.yml on a real dockerd and docker-compose.

Two gateway containers (the image test_container_stack.py builds: same tag, so the build is
the layer cache's) share one Redis, HAProxy balances them, Prometheus scrapes each. Offline,
Redis and HAProxy are stand-ins made of Debian's packages (`ensure_service_images`; set
`SSE_GATEWAY_REDIS_IMAGE` / `SSE_GATEWAY_LB_IMAGE` to use your own), as the base and Prometheus
are. A test override (`replicas-test.yml`, written into the copy of the build context) gives
the replicas gateway keys with a per-minute limit, a short heartbeat and a paced `mock-slow`.

Checked, in this order (the module's tests share one stack and build on each other):

1. a key limited to N requests per minute gets N through the balancer in total - not N per
   replica - and both replicas answered;
2. an SSE stream through HAProxy arrives as it is sent: events spaced as the upstream spaces
   them, and the gateway's `: ping` heartbeats between them;
3. Prometheus scrapes each replica directly (two targets up, two replicas in the dashboard's
   count);
4. Redis stopped: with `on_error: open` requests are still answered and each replica's
   fallbacks are counted; readiness stays up;
5. replicas recreated with `on_error: closed`: `/readyz` answers 503 and HAProxy takes both
   out; Redis started again: ready again and serving through the balancer.

Grafana is not started (no image here); the dashboard's queries are evaluated by
test_prometheus_scrape.py. Cleanup and timing as in test_container_stack.py.
"""

from __future__ import annotations

import contextlib
import csv
import http.client
import io
import itertools
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.compose_stack import (
    Compose,
    Session,
    base_images,
    compose_default,
    free_port,
    http_get,
    module_stack,
    prepare_build_context,
    prometheus_value,
    pulled,
    wait_healthy,
    wait_http,
)
from tests.deploy.local_images import ensure_service_images

pytestmark = [pytest.mark.container, pytest.mark.timeout(900)]

PROJECT = "ssegwfleet"
GATEWAY_IMAGE = "localhost/sse-gateway:ci"  # test_container_stack.py's: one build for both
COMPOSE_FILE = "deploy/replicas/docker-compose.yml"
OVERRIDE_FILE = "deploy/replicas/replicas-test.yml"
TOOLS = ("dockerd", "docker-compose", "debootstrap", "prometheus", "iptables", "ip", "tar")
REPLICAS = ("gateway-1", "gateway-2")
PER_MINUTE = 5  # requests per minute of every gateway key
KEYS = {"limited": "fleet-key-limited", "stream": "fleet-key-stream", "outage": "fleet-key-outage"}
SLOW_CHUNK = 0.6  # seconds between mock-slow's words
HEARTBEAT = 0.2  # seconds without a write before the gateway sends `: ping`
WITHIN = 60.0  # bound of every wait for a state to show (a hang guard, not a timing claim)


@dataclass
class Fleet(Compose):
    lb_url: str = ""
    stats_url: str = ""
    prometheus_url: str = ""
    metrics_urls: tuple[str, ...] = ()

    def replica_metric(self, index: int, name: str, **labels: str) -> float:
        """The sum of `name`'s samples with `labels` on one replica (its metrics port)."""
        text = http_get(f"{self.metrics_urls[index]}/metrics").decode()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    def readiness(self, service: str) -> tuple[int, str]:
        """`/readyz` of one replica, asked inside its container (its API port is not published)."""
        probe = (
            "import urllib.request, urllib.error\n"
            "try:\n"
            "    r = urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=3)\n"
            "    print(r.status, r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code, e.read().decode())\n"
        )
        out = self.engine.docker("exec", self.container(service), "python3", "-c", probe).stdout
        status, _, body = out.strip().partition(" ")
        return int(status), json.loads(body)["status"]

    def balanced(self) -> dict[str, str]:
        """HAProxy's view of each replica (`UP`, `DOWN`, ...), from its stats page."""
        rows = csv.DictReader(io.StringIO(http_get(f"{self.stats_url}/stats;csv").decode()[2:]))
        return {row["svname"]: row["status"] for row in rows if row["pxname"] == "gateways"}


def _until(what: str, check: Callable[[], bool], fleet: Fleet) -> None:
    deadline = time.monotonic() + WITHIN
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # a service still starting: not yet
            if check():
                return
        time.sleep(0.3)
    logs = "\n".join(fleet.logs(service, 20) for service in ("lb", *REPLICAS))
    raise AssertionError(f"not within {WITHIN:.0f} s: {what}\n{logs}")


def _until_both_replicas_answer(fleet: Fleet, readiness: tuple[int, str]) -> None:
    _until(
        f"both replicas' /readyz answer {readiness}",
        lambda: [fleet.readiness(service) for service in REPLICAS] == [readiness] * 2,
        fleet,
    )


def _chat(fleet: Fleet, key: str, model: str = "mock") -> int:
    request = urllib.request.Request(
        f"{fleet.lb_url}/v1/chat/completions",
        data=json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.read()
        return error.code


def _service_images(session: Session) -> tuple[str, str]:
    """Redis and HAProxy: from the environment, the compose file's defaults when a registry
    serves them, else stand-ins of Debian's packages."""
    compose_file = session.run_dir / "project" / COMPOSE_FILE
    chosen: dict[str, str] = {}
    for variable in ("REDIS_IMAGE", "LB_IMAGE"):
        chosen[variable] = os.environ.get(f"SSE_GATEWAY_{variable}", "")
        if not chosen[variable]:
            default = compose_default(variable, compose_file)
            chosen[variable] = default if pulled(session.engine, default) else ""
    if not all(chosen.values()):
        redis, haproxy = ensure_service_images(session.engine, session.cache)
        chosen = {
            "REDIS_IMAGE": chosen["REDIS_IMAGE"] or redis,
            "LB_IMAGE": chosen["LB_IMAGE"] or haproxy,
        }
    return chosen["REDIS_IMAGE"], chosen["LB_IMAGE"]


def _write_test_config(project_dir: Path) -> None:
    """Gateway keys (a keys file in the mounted ./config) and the pace of the stream test."""
    (project_dir / "config/replicas-test-keys").write_text("\n".join(KEYS.values()) + "\n")
    environment = {
        "GATEWAY_AUTH__KEYS_FILE": "/etc/sse-gateway/replicas-test-keys",
        "GATEWAY_AUTH__REQUESTS_PER_MINUTE_PER_KEY": str(PER_MINUTE),
        "GATEWAY_HEARTBEAT": str(HEARTBEAT),
        "GATEWAY_MOCK__SLOW_CHUNK_DELAY": str(SLOW_CHUNK),
    }
    override = {
        "version": "3.8",
        "services": {name: {"environment": environment} for name in REPLICAS},
    }
    (project_dir / OVERRIDE_FILE).write_text(json.dumps(override, indent=2))


def _start_fleet(session: Session) -> Fleet:
    engine, timings = session.engine, session.timings
    mark = time.monotonic()
    project_dir = prepare_build_context(session)
    _write_test_config(project_dir)
    base, prometheus = base_images(engine, session.cache)
    redis, haproxy = _service_images(session)
    session.images = f"{base}, {prometheus}, {redis}, {haproxy}"
    mark = timings.phase("images", mark)
    ports = {name: free_port() for name in ("lb", "stats", "prometheus", "m1", "m2", "grafana")}
    env = engine.env | {
        "BASE_IMAGE": base,
        "GATEWAY_IMAGE": GATEWAY_IMAGE,
        "PROMETHEUS_IMAGE": prometheus,
        "REDIS_IMAGE": redis,
        "LB_IMAGE": haproxy,
        "GATEWAY_PORT": str(ports["lb"]),
        "LB_STATS_PORT": str(ports["stats"]),
        "GATEWAY_1_METRICS_PORT": str(ports["m1"]),
        "GATEWAY_2_METRICS_PORT": str(ports["m2"]),
        "PROMETHEUS_PORT": str(ports["prometheus"]),
        "GRAFANA_PORT": str(ports["grafana"]),
        "GATEWAY_CONFIG_FILE": "",
        "GATEWAY_STATE_ON_ERROR": "open",
        "GATEWAY_DRAIN_GRACE": "2",
        "GATEWAY_WORKERS": "1",
        "OPENAI_API_KEY": "",
    }
    fleet = Fleet(
        engine,
        PROJECT,
        project_dir,
        (COMPOSE_FILE, OVERRIDE_FILE),
        env,
        timings,
        lb_url=f"http://127.0.0.1:{ports['lb']}",
        stats_url=f"http://127.0.0.1:{ports['stats']}",
        prometheus_url=f"http://127.0.0.1:{ports['prometheus']}",
        metrics_urls=(f"http://127.0.0.1:{ports['m1']}", f"http://127.0.0.1:{ports['m2']}"),
    )
    session.stack = fleet
    fleet.compose("build", "gateway-1", timeout=900)
    mark = timings.phase("gateway build", mark)
    fleet.compose("up", "-d", "redis", *REPLICAS, "lb", "prometheus")
    for service in ("redis", *REPLICAS):
        wait_healthy(fleet, service)
    wait_http(fleet, "prometheus", f"{fleet.prometheus_url}/-/ready")
    _until("HAProxy has both replicas up", lambda: set(fleet.balanced().values()) == {"UP"}, fleet)
    timings.phase("up until balanced", mark)
    return fleet


@pytest.fixture(scope="module")
def fleet(request: pytest.FixtureRequest) -> Iterator[Fleet]:
    yield from module_stack(request, "replicas test", TOOLS, _start_fleet)


def test_a_per_minute_limit_holds_in_total_across_the_replicas_behind_the_balancer(
    fleet: Fleet,
) -> None:
    before = [fleet.replica_metric(i, "gateway_requests_total") for i in range(2)]
    started = time.monotonic()
    statuses = [_chat(fleet, KEYS["limited"]) for _ in range(3 * PER_MINUTE)]
    elapsed = time.monotonic() - started
    after = [fleet.replica_metric(i, "gateway_requests_total") for i in range(2)]

    refilled = int(elapsed * PER_MINUTE / 60)  # the bucket refills continuously
    assert set(statuses) <= {200, 429}, statuses
    assert PER_MINUTE <= statuses.count(200) <= PER_MINUTE + refilled, statuses
    served = [a - b for a, b in zip(after, before, strict=True)]
    assert all(count > 0 for count in served), f"one replica took all the requests: {served}"


def test_an_sse_stream_through_the_balancer_arrives_as_it_is_sent(fleet: Fleet) -> None:
    host, port = fleet.lb_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    body = {
        "model": "mock-slow",
        "stream": True,
        "messages": [{"role": "user", "content": "one two three"}],
    }
    try:
        connection.request(
            "POST",
            "/v1/chat/completions",
            body=json.dumps(body),
            headers={
                "content-type": "application/json",
                "authorization": f"Bearer {KEYS['stream']}",
            },
        )
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("content-type", "").startswith("text/event-stream")
        assert response.getheader("content-length") is None
        arrivals: list[tuple[float, str]] = []  # (seconds since the headers, kind)
        start = time.monotonic()
        while sum(kind == "data" for _, kind in arrivals) < 5:
            line = response.fp.readline()
            assert line, f"the stream ended early: {arrivals}"
            if line.startswith(b"data: "):
                arrivals.append((time.monotonic() - start, "data"))
            elif line.startswith(b":"):
                arrivals.append((time.monotonic() - start, "ping"))
    finally:
        connection.close()

    data = [at for at, kind in arrivals if kind == "data"]
    # From the first word on (an opening chunk may precede it at once): buffered, the events
    # would arrive together (gaps near 0); relayed, one per SLOW_CHUNK.
    gaps = [later - earlier for earlier, later in itertools.pairwise(data[1:])]
    assert all(gap > SLOW_CHUNK / 2 for gap in gaps), arrivals
    pings_between = [at for at, kind in arrivals if kind == "ping" and data[0] < at < data[-1]]
    assert pings_between, f"no heartbeat came through between two events: {arrivals}"


def test_prometheus_scrapes_each_replica_directly(fleet: Fleet) -> None:
    def targets() -> dict[str, str]:
        answer = json.loads(http_get(f"{fleet.prometheus_url}/api/v1/targets"))
        return {
            target["labels"]["instance"]: target["health"]
            for target in answer["data"]["activeTargets"]
            if target["labels"]["job"] == "sse-gateway"
        }

    _until(
        "both replicas scraped", lambda: targets() == {f"{r}:9464": "up" for r in REPLICAS}, fleet
    )
    count = "count(max by (instance) (gateway_build_info))"  # the dashboard's replica count
    _until(
        "two replicas in the dashboard's count",
        lambda: prometheus_value(fleet.prometheus_url, count) == 2,
        fleet,
    )


def test_redis_stopped_requests_are_still_answered_and_the_fallback_counted(fleet: Fleet) -> None:
    fleet.compose("stop", "-t", "5", "redis")
    before = sum(
        fleet.replica_metric(i, "gateway_state_fallbacks_total", operation="admit")
        for i in range(2)
    )
    statuses = [_chat(fleet, KEYS["outage"]) for _ in range(4)]

    assert statuses == [200] * 4
    fallbacks = sum(
        fleet.replica_metric(i, "gateway_state_fallbacks_total", operation="admit")
        for i in range(2)
    )
    assert fallbacks >= before + 4
    assert [fleet.readiness(service) for service in REPLICAS] == [(200, "ready")] * 2
    assert set(fleet.balanced().values()) == {"UP"}


def test_readiness_follows_redis_when_the_policy_is_closed(fleet: Fleet) -> None:
    """Redis is still stopped (the previous test): replicas recreated with `on_error: closed`
    turn unready and HAProxy takes them out; Redis back, they serve again."""
    closed = {"GATEWAY_STATE_ON_ERROR": "closed"}
    fleet.env |= closed
    fleet.compose("up", "-d", "--no-deps", *REPLICAS)
    for service in REPLICAS:
        assert (
            fleet.inspect(service, "{{.Config.Env}}").count("GATEWAY_STATE__ON_ERROR=closed") == 1
        )
    _until_both_replicas_answer(fleet, (503, "redis_unavailable"))
    for service in REPLICAS:
        wait_healthy(fleet, service)  # alive (/healthz) while not ready: not restarted
    _until("HAProxy took both out", lambda: set(fleet.balanced().values()) == {"DOWN"}, fleet)
    assert _chat(fleet, KEYS["outage"]) == 503

    fleet.compose("start", "redis")
    wait_healthy(fleet, "redis")
    _until_both_replicas_answer(fleet, (200, "ready"))
    _until("HAProxy has both back", lambda: set(fleet.balanced().values()) == {"UP"}, fleet)
    assert _chat(fleet, KEYS["outage"]) == 200
