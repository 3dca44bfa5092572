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


def test_promtool_accepts_the_prometheus_config() -> None:
    missing = missing_tools("promtool")
    require(
        "not installed: promtool" if missing else None,
        env_var="SSE_GATEWAY_REQUIRE_PROMETHEUS_TEST",
    )
    result = subprocess.run(
        ["promtool", "check", "config", str(ROOT / "config/prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
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
    everything = "\n".join(query.expr for query in dashboard_queries())
    for needed in (
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
    ):
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
