"""The deployment files say what we promise: Dockerfile, docker-compose.yml, Prometheus and
Grafana config, the dashboard, the Kubernetes manifests.

Static checks (parsing and structure), plus the real tools where they are installed:
`docker-compose config` (1.29 here) on the compose file, `promtool check config` on
config/prometheus.yml, and the gateway's own settings loader on the configs we ship.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.settings import load_settings
from tests.deploy.dashboard import dashboard_panels, dashboard_queries
from tests.deploy.prerequisites import missing_tools, require

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
DRAIN_SECONDS = 30  # the longest drain the gateway will be configured with
TTFB = "gateway_time_to_first_byte_seconds"


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = _yaml(COMPOSE)
    return compose


def _duration_seconds(value: str | int) -> float:
    """Compose durations: "45s", "1m30s", "500ms" (or a bare number of seconds)."""
    if isinstance(value, int | float):
        return float(value)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert parts, f"bad duration {value!r}"
    assert "".join(n + u for n, u in parts) == value, f"bad duration {value!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


# ---- docker-compose.yml ----


def test_compose_file_has_the_three_services_on_a_version_1_29_accepts() -> None:
    compose = _compose()
    assert str(compose["version"]).startswith("3.")
    assert set(compose["services"]) == {"gateway", "prometheus", "grafana"}


def test_compose_publishes_ports_on_loopback_only() -> None:
    for name, service in _compose()["services"].items():
        assert service.get("ports"), f"{name} publishes no port"
        for port in service["ports"]:
            assert isinstance(port, str), f"{name}: use the short 'IP:HOST:CONTAINER' form"
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_compose_gateway_builds_from_an_overridable_base_and_stops_gracefully() -> None:
    gateway = _compose()["services"]["gateway"]
    assert gateway["build"]["context"] == "."
    assert re.fullmatch(
        r"\$\{BASE_IMAGE:-python:3\.\d+-slim\}", gateway["build"]["args"]["BASE_IMAGE"]
    )
    drain = re.fullmatch(
        r"\$\{GATEWAY_DRAIN_GRACE:-(\d+(?:\.\d+)?)\}", gateway["environment"]["GATEWAY_DRAIN_GRACE"]
    )
    assert drain, "the drain grace is settable, with a default"
    assert float(drain.group(1)) <= DRAIN_SECONDS
    assert _duration_seconds(gateway["stop_grace_period"]) > DRAIN_SECONDS
    test = gateway["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert "/healthz" in " ".join(test)
    assert "curl" not in " ".join(test)
    assert "wget" not in " ".join(test)
    assert gateway["environment"]["GATEWAY_LOG__FORMAT"] == "json"
    assert gateway["read_only"] is True
    assert "/tmp" in gateway["tmpfs"]


def test_compose_images_are_overridable() -> None:
    services = _compose()["services"]
    assert services["prometheus"]["image"].startswith("${PROMETHEUS_IMAGE:-")
    assert services["grafana"]["image"].startswith("${GRAFANA_IMAGE:-")


def test_compose_mounts_existing_prometheus_and_grafana_config() -> None:
    services = _compose()["services"]
    mounts = {
        name: {v.split(":")[0]: v.split(":")[1] for v in service.get("volumes", [])}
        for name, service in services.items()
    }
    assert mounts["prometheus"]["./config/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounts["grafana"]["./config/grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboards_in_container = mounts["grafana"]["./config/grafana/dashboards"]
    for source in (path for volumes in mounts.values() for path in volumes):
        if source.startswith("./"):
            assert (ROOT / source).exists(), f"compose mounts {source}, which does not exist"
    environment = services["grafana"]["environment"]
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    provider = _yaml(ROOT / "config/grafana/provisioning/dashboards/sse-gateway.yml")
    assert provider["providers"][0]["options"]["path"] == dashboards_in_container


def test_docker_compose_accepts_the_file() -> None:
    missing = missing_tools("docker-compose")
    require(
        "not installed: docker-compose" if missing else None,
        env_var="SSE_GATEWAY_REQUIRE_CONTAINER_TEST",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "DOCKER_"))}
    command = ["docker-compose", "-f", str(COMPOSE)]
    quiet = subprocess.run(
        [*command, "config", "-q"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert quiet.returncode == 0, quiet.stderr
    env |= {"BASE_IMAGE": "localhost/base:test", "GATEWAY_PORT": "18080"}
    rendered = subprocess.run(
        [*command, "config"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert rendered.returncode == 0, rendered.stderr
    config = yaml.safe_load(rendered.stdout)
    gateway = config["services"]["gateway"]
    assert gateway["build"]["args"]["BASE_IMAGE"] == "localhost/base:test"
    published = gateway["ports"][0]
    if isinstance(published, dict):  # compose v2 renders the long form
        assert (published["host_ip"], str(published["published"])) == ("127.0.0.1", "18080")
    else:
        assert published.startswith("127.0.0.1:18080:")


# ---- Prometheus and Grafana ----


def test_prometheus_config_scrapes_the_gateway_every_few_seconds() -> None:
    config = _yaml(ROOT / "config/prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["sse-gateway"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    # The gateway's metrics listener (the image's GATEWAY_METRICS__LISTEN__PORT), not the API.
    assert job["static_configs"][0]["targets"] == ["gateway:9464"]
    interval = job.get("scrape_interval", config["global"]["scrape_interval"])
    assert _duration_seconds(interval) <= 15


def _run_tool(*argv: str, env_var: str) -> subprocess.CompletedProcess[str]:
    """`argv` run to its end (skipped, or failed under `env_var`=1, without the tool)."""
    missing = missing_tools(argv[0])
    require(f"not installed: {argv[0]}" if missing else None, env_var=env_var)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_accepts_the_prometheus_config() -> None:
    result = _run_tool(
        "promtool",
        "check",
        "config",
        str(ROOT / "config/prometheus.yml"),
        env_var="SSE_GATEWAY_REQUIRE_PROMETHEUS_TEST",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_datasource_points_at_the_compose_prometheus() -> None:
    directory = ROOT / "config/grafana/provisioning/datasources"
    datasources = [ds for path in directory.glob("*.yml") for ds in _yaml(path)["datasources"]]
    assert [ds["type"] for ds in datasources] == ["prometheus"]
    assert datasources[0]["url"] == "http://prometheus:9090"
    assert datasources[0]["isDefault"] is True


def test_dashboard_has_a_query_in_every_panel_and_the_promised_panels() -> None:
    dashboard = json.loads((ROOT / "config/grafana/dashboards/sse-gateway.json").read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    panels = dashboard_panels()
    assert len({panel["id"] for panel in panels}) == len(panels), "panel ids must be unique"
    for panel in panels:
        exprs = [target.get("expr", "").strip() for target in panel.get("targets", [])]
        assert exprs, f"panel {panel['title']!r} has no target"
        assert all(exprs), f"panel {panel['title']!r} has a target without a query"
        datasource = panel.get("datasource", {})
        assert datasource.get("type") == "prometheus", panel["title"]
    _assert_dashboard_queries_match(
        r"gateway_active_streams",
        *(
            rf"histogram_quantile\({q}, sum by \(le\) \(rate\({TTFB}_bucket"
            for q in ("0.5", "0.95", "0.99")
        ),
        r"sum by \(category\) \(rate\(gateway_errors_total",
        r"rate\(gateway_relayed_events_total",
        r"rate\(gateway_relayed_bytes_total",
        r"sum by \(kind\) \(rate\(gateway_tokens_total",
        r"sum by \(outcome\) \(rate\(gateway_requests_total",
        r"sum by \(phase\) \(rate\(gateway_client_disconnects_total",
    )


def _assert_dashboard_queries_match(*patterns: str) -> None:
    everything = "\n".join(query.expr for query in dashboard_queries())
    for needed in patterns:
        assert re.search(needed, everything), f"no dashboard query matches {needed}"


def test_dashboard_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard_panels():
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


# ---- Kubernetes ----


def _k8s_objects() -> dict[str, dict[str, Any]]:
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and "kind" in document and document["kind"] != "Kustomization":
                objects[f"{document['kind']}/{document['metadata']['name']}"] = document
    return objects


def _deployment() -> dict[str, Any]:
    deployment: dict[str, Any] = _k8s_objects()["Deployment/sse-gateway"]
    return deployment


def test_k8s_manifests_parse_and_have_the_objects() -> None:
    kinds = {key.split("/")[0] for key in _k8s_objects()}
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Service"} <= kinds
    kustomization = _yaml(K8S / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    assert "secret.example.yaml" not in kustomization["resources"]  # a placeholder key
    assert (K8S / "README.md").is_file()


def test_k8s_probes_grace_period_and_security_context() -> None:
    pod = _deployment()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    pre_stop_seconds = float(pre_stop[-1]) if pre_stop and pre_stop[0] == "sleep" else 0.0
    assert pod["terminationGracePeriodSeconds"] > DRAIN_SECONDS + pre_stop_seconds
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]


def test_k8s_config_secret_service_and_scrape_annotations_fit_together() -> None:
    objects = _k8s_objects()
    deployment = _deployment()
    template = deployment["spec"]["template"]
    (container,) = template["spec"]["containers"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    # Prometheus scrapes the metrics listener the image configures, never the API port.
    assert annotations["prometheus.io/port"] == str(ports["metrics"]) == "9464"
    assert ports["http"] == 8080
    env = {item["name"]: item for item in container["env"]}
    secret_ref = env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]
    secret = objects[f"Secret/{secret_ref['name']}"]
    assert secret_ref["key"] in secret["stringData"]
    volumes = {volume["name"]: volume for volume in template["spec"]["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    config_path = Path(env["GATEWAY_CONFIG"]["value"])
    config_map = volumes[mounts[str(config_path.parent)]]["configMap"]["name"]
    assert config_path.name in objects[f"ConfigMap/{config_map}"]["data"]
    assert mounts.get("/tmp"), "readOnlyRootFilesystem needs a writable /tmp"
    service = objects["Service/sse-gateway"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    assert (
        deployment["spec"]["selector"]["matchLabels"].items()
        <= template["metadata"]["labels"].items()
    )
    assert all(port["targetPort"] in ports for port in service["spec"]["ports"])


def test_k8s_config_map_is_a_valid_gateway_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    (container,) = _deployment()["spec"]["template"]["spec"]["containers"]
    for item in container["env"]:
        if "value" in item and item["name"] != "GATEWAY_CONFIG":
            monkeypatch.setenv(item["name"], item["value"])
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-secret")
    config = tmp_path / "gateway.yaml"
    config.write_text(_k8s_objects()["ConfigMap/sse-gateway-config"]["data"]["gateway.yaml"])
    settings = load_settings(config)
    assert {route.model for route in settings.routes} >= {"mock", "gpt-4o-mini"}
    pod = _deployment()["spec"]["template"]["spec"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > float(pre_stop[1]) + settings.drain_grace
    api_key = settings.upstreams["openai"].api_key
    assert api_key is not None
    assert api_key.get_secret_value() == "sk-from-the-secret"


# ---- Dockerfile and .dockerignore ----


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def test_dockerfile_base_image_argument_comes_before_every_from() -> None:
    instructions = _dockerfile_instructions()
    first_from = next(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    assert ("ARG", "BASE_IMAGE=python:3.12-slim") in instructions[:first_from]
    froms = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage: a builder and a runtime stage"
    for arguments in froms:
        assert arguments.split()[0] == "${BASE_IMAGE}", arguments


def test_dockerfile_runs_the_gateway_as_non_root_in_exec_form() -> None:
    instructions = _dockerfile_instructions()
    final_stage = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    users = [arguments for keyword, arguments in final_stage if keyword == "USER"]
    assert users
    assert users[-1].split(":")[0] not in {"0", "root"}
    entrypoint = next(arguments for keyword, arguments in final_stage if keyword == "ENTRYPOINT")
    assert json.loads(entrypoint)[0].endswith("gateway"), "exec form: SIGTERM reaches the gateway"
    assert ("EXPOSE", "8080 9464") in final_stage  # the API and the metrics listener
    env = " ".join(arguments for keyword, arguments in final_stage if keyword == "ENV")
    assert "GATEWAY_LISTEN__HOST=0.0.0.0" in env
    assert "GATEWAY_LOG__FORMAT=json" in env
    assert "[dev]" not in (ROOT / "Dockerfile").read_text()


def test_dockerfile_serves_metrics_on_a_port_of_its_own() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "GATEWAY_METRICS__LISTEN__HOST=0.0.0.0" in text
    assert "GATEWAY_METRICS__LISTEN__PORT=9464" in text
    assert re.search(r"^EXPOSE 8080 9464$", text, re.MULTILINE)
    gateway = _compose()["services"]["gateway"]
    assert gateway["environment"]["GATEWAY_METRICS__LISTEN__PORT"] == 9464
    assert "127.0.0.1:${GATEWAY_METRICS_PORT:-9464}:9464" in gateway["ports"]


def test_dockerfile_healthcheck_uses_python_not_curl() -> None:
    (healthcheck,) = [a for k, a in _dockerfile_instructions() if k == "HEALTHCHECK"]
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert command[0].startswith("python")
    assert "/healthz" in command[-1]
    assert "curl" not in healthcheck
    assert "wget" not in healthcheck


def test_dockerignore_lets_in_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "an allow-list keeps .venv, .git and caches out of the context"
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    for keyword, arguments in _dockerfile_instructions():
        if keyword == "COPY" and not arguments.startswith("--from"):
            for source in shlex.split(arguments)[:-1]:
                source = source.rstrip("/")
                assert (ROOT / source).exists(), f"COPY {source}: missing from the repository"
                assert any(source == a or source.startswith(a + "/") for a in allowed), source
    assert (ROOT / "docker/ca-certificates/README.md").is_file()


# ---- deploy/replicas: two gateways sharing Redis behind HAProxy ----

REPLICAS_DIR = ROOT / "deploy" / "replicas"
REPLICAS_COMPOSE = REPLICAS_DIR / "docker-compose.yml"
GATEWAY_REPLICAS = ("gateway-1", "gateway-2")


def _replicas_compose() -> dict[str, Any]:
    compose: dict[str, Any] = _yaml(REPLICAS_COMPOSE)
    return compose


def _haproxy_sections() -> dict[str, list[list[str]]]:
    """haproxy.cfg as {"defaults": [[keyword, args...], ...], "backend gateways": ...}."""
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    for raw in (REPLICAS_DIR / "haproxy.cfg").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            current = sections.setdefault(" ".join(line.split()[:2]), [])
        else:
            current.append(line.split())
    return sections


def _directive(section: list[list[str]], *keywords: str) -> list[str] | None:
    for line in section:
        if line[: len(keywords)] == list(keywords):
            return line[len(keywords) :]
    return None


def test_replicas_compose_has_redis_two_gateways_a_balancer_and_monitoring() -> None:
    compose = _replicas_compose()
    assert str(compose["version"]).startswith("3.")
    assert set(compose["services"]) == {
        "redis",
        *GATEWAY_REPLICAS,
        "lb",
        "prometheus",
        "grafana",
    }
    services = compose["services"]
    assert services["redis"]["image"] == "${REDIS_IMAGE:-redis:7}"
    assert services["lb"]["image"].startswith("${LB_IMAGE:-haproxy:")
    assert "--save" in services["redis"]["command"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert isinstance(port, str), f"{name}: use the short 'IP:HOST:CONTAINER' form"
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert "ports" not in services["redis"], "Redis is for the gateways only"
    for source in (v.split(":")[0] for s in services.values() for v in s.get("volumes", [])):
        if source.startswith("."):
            assert (REPLICAS_DIR / source).resolve().exists(), f"compose mounts {source}"


def test_replicas_share_one_redis_and_are_reached_only_through_the_balancer() -> None:
    services = _replicas_compose()["services"]
    first, second = (services[name] for name in GATEWAY_REPLICAS)
    assert first["environment"] == second["environment"]
    environment = first["environment"]
    assert environment["GATEWAY_STATE__REDIS_URL"] == "${GATEWAY_REDIS_URL:-redis://redis:6379/0}"
    assert environment["GATEWAY_STATE__ON_ERROR"] == "${GATEWAY_STATE_ON_ERROR:-open}"
    assert first["build"]["context"] == "../.."
    assert first["image"] == second["image"]
    assert first["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    for replica in (first, second):
        # Only the metrics port is published: the API is served through HAProxy.
        assert [port.rsplit(":", 1)[1] for port in replica["ports"]] == ["9464"]
        assert _duration_seconds(replica["stop_grace_period"]) > DRAIN_SECONDS
        assert replica["read_only"] is True
    assert [port.rsplit(":", 1)[1] for port in services["lb"]["ports"]] == ["8080", "8404"]
    mounts = dict(v.split(":")[:2] for v in services["lb"]["volumes"])
    assert mounts["./haproxy.cfg"] == "/usr/local/etc/haproxy/haproxy.cfg"


def test_haproxy_balances_the_replicas_for_sse() -> None:
    sections = _haproxy_sections()
    defaults, backend = sections["defaults"], sections["backend gateways"]
    assert _directive(defaults, "mode") == ["http"]
    assert _directive(defaults, "option", "http-no-delay") == []
    for side in ("client", "server"):
        timeout = _directive(defaults, "timeout", side)
        assert timeout, f"timeout {side}"
        # Longer than any stream the gateway keeps (max_timeouts.total: at most 3600 s).
        assert _duration_seconds(timeout[0]) >= 3600, timeout
    everything = " ".join(" ".join(line) for lines in sections.values() for line in lines)
    assert "compression" not in everything, "compressing buffers an SSE stream"
    assert "http-server-close" not in everything, "keep-alive to the replicas"
    assert "httpclose" not in everything
    assert _directive(backend, "balance") == ["leastconn"]
    assert _directive(backend, "http-check", "send")[:4] == ["meth", "GET", "uri", "/readyz"]  # type: ignore[index]
    assert _directive(backend, "http-check", "expect") == ["status", "200"]
    assert "check" in (_directive(backend, "default-server") or [])
    servers = [line[1:3] for line in backend if line[0] == "server"]
    assert servers == [[name, f"{name}:8080"] for name in GATEWAY_REPLICAS]
    assert _directive(sections["frontend api"], "bind") == [":8080"]


def test_haproxy_accepts_its_config() -> None:
    result = _run_tool(
        "haproxy",
        "-c",
        "-f",
        str(REPLICAS_DIR / "haproxy.cfg"),
        env_var="SSE_GATEWAY_REQUIRE_CONTAINER_TEST",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The replicas' names resolve only inside the compose network; nothing else may warn.
    warnings = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "WARNING" in line and "could not resolve address" not in line
    ]
    assert not warnings, warnings


def test_replicas_prometheus_scrapes_each_replica_not_the_balancer() -> None:
    config = _yaml(REPLICAS_DIR / "prometheus.yml")
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "sse-gateway"  # the dashboard's and the tests' job
    (static,) = job["static_configs"]
    assert static["targets"] == [f"{name}:9464" for name in GATEWAY_REPLICAS]
    interval = job.get("scrape_interval", config["global"]["scrape_interval"])
    assert _duration_seconds(interval) <= 15
    mounts = dict(
        v.split(":")[:2] for v in _replicas_compose()["services"]["prometheus"]["volumes"]
    )
    assert mounts["./prometheus.yml"] == "/etc/prometheus/prometheus.yml"


def test_promtool_and_docker_compose_accept_the_replicas_files() -> None:
    missing = missing_tools("promtool", "docker-compose")
    require(
        f"not installed: {', '.join(missing)}" if missing else None,
        env_var="SSE_GATEWAY_REQUIRE_CONTAINER_TEST",
    )
    check = _run_tool(
        "promtool",
        "check",
        "config",
        str(REPLICAS_DIR / "prometheus.yml"),
        env_var="SSE_GATEWAY_REQUIRE_PROMETHEUS_TEST",
    )
    assert check.returncode == 0, check.stdout + check.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "DOCKER_"))}
    env |= {"REDIS_IMAGE": "localhost/redis:test", "GATEWAY_STATE_ON_ERROR": "closed"}
    rendered = subprocess.run(
        ["docker-compose", "-f", str(REPLICAS_COMPOSE), "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    services = yaml.safe_load(rendered.stdout)["services"]
    assert services["redis"]["image"] == "localhost/redis:test"
    for name in GATEWAY_REPLICAS:
        assert services[name]["environment"]["GATEWAY_STATE__ON_ERROR"] == "closed"
        assert Path(services[name]["build"]["context"]) == ROOT


def test_dashboard_shows_each_replica_and_the_shared_state() -> None:
    _assert_dashboard_queries_match(
        r"sum by \(instance\) \(rate\(gateway_requests_total",
        r"sum by \(instance\) \(gateway_active_streams",
        r"histogram_quantile\(0\.99, sum by \(le\) \(rate\(gateway_redis_call_seconds_bucket",
        r"sum by \(instance, operation\) \(rate\(gateway_redis_errors_total",
        r"sum by \(instance, operation\) \(rate\(gateway_state_fallbacks_total",
        r"count\(?.*gateway_build_info",
    )


# ---- Kubernetes at scale: Redis, the HPA ----


def test_k8s_gateway_reads_the_redis_url_from_a_secret_naming_the_redis_service() -> None:
    objects = _k8s_objects()
    (container,) = _deployment()["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    ref = env["GATEWAY_STATE__REDIS_URL"]["valueFrom"]["secretKeyRef"]
    secret = objects[f"Secret/{ref['name']}"]
    url = urlsplit(secret["stringData"][ref["key"]])
    service = objects[f"Service/{url.hostname}"]
    assert url.scheme == "redis"
    assert url.port in {port["port"] for port in service["spec"]["ports"]}
    redis = objects["Deployment/sse-gateway-redis"]
    pod = redis["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (redis_container,) = pod["spec"]["containers"]
    assert redis_container["image"].startswith("redis:")
    assert {"cpu", "memory"} <= set(redis_container["resources"]["requests"])
    assert redis_container["securityContext"]["readOnlyRootFilesystem"] is True
    kustomization = _yaml(K8S / "kustomization.yaml")
    assert {"redis.yaml", "redis-secret.yaml", "horizontalpodautoscaler.yaml"} <= set(
        kustomization["resources"]
    )


def test_k8s_redis_pods_are_not_gateway_pods_and_only_gateways_reach_them() -> None:
    objects = _k8s_objects()
    redis_labels = objects["Deployment/sse-gateway-redis"]["spec"]["template"]["metadata"]["labels"]
    gateway_labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    for selector in (
        objects["Service/sse-gateway"]["spec"]["selector"],
        objects["PodDisruptionBudget/sse-gateway"]["spec"]["selector"]["matchLabels"],
        _deployment()["spec"]["selector"]["matchLabels"],
    ):
        assert not selector.items() <= redis_labels.items(), selector
    policy = objects["NetworkPolicy/sse-gateway-redis"]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= redis_labels.items()
    (rule,) = policy["ingress"]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"].items() <= gateway_labels.items()


def test_k8s_hpa_keeps_at_least_two_gateways_and_scales_on_cpu() -> None:
    objects = _k8s_objects()
    hpa = objects["HorizontalPodAutoscaler/sse-gateway"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "sse-gateway")
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    (cpu,) = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert cpu["resource"]["name"] == "cpu"
    assert 0 < cpu["resource"]["target"]["averageUtilization"] <= 100
    deployment = _deployment()
    assert "replicas" not in deployment["spec"], "the HPA owns the count; apply must not reset it"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "cpu" in container["resources"]["requests"], "utilization is relative to the request"
    pdb = objects["PodDisruptionBudget/sse-gateway"]["spec"]
    assert pdb["minAvailable"] < hpa["spec"]["minReplicas"], "a drain must be able to evict one"
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60


def test_k8s_config_map_shares_state_with_a_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    objects = _k8s_objects()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-secret")
    monkeypatch.setenv(
        "GATEWAY_STATE__REDIS_URL",
        objects["Secret/sse-gateway-redis"]["stringData"]["GATEWAY_STATE__REDIS_URL"],
    )
    config = tmp_path / "gateway.yaml"
    config.write_text(objects["ConfigMap/sse-gateway-config"]["data"]["gateway.yaml"])
    settings = load_settings(config)
    assert settings.state.redis_url is not None
    assert settings.state.redis_url.get_secret_value() == "redis://sse-gateway-redis:6379/0"
    assert settings.state.on_error in {"open", "closed"}
