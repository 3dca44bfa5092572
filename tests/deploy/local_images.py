"""Images for the container test on a machine that reaches no image registry.

- `ensure_base_image`: a stand-in for `python:3.12-slim` made with debootstrap from the host's
  Debian mirror (Python 3.11, bookworm; python3, venv, pip, ca-certificates). Like the real
  image it trusts only Debian's CA bundle: the host's extra CA certificates (an intercepting
  HTTPS proxy's) reach the gateway build the documented way, through `docker/ca-certificates/`
  in the build context, so the test exercises that feature. The root filesystem is cached as a
  tarball keyed by the suite and the package list, so it is made once.
- `ensure_prometheus_image`: the host's Debian `prometheus` binary on that base, laid out like
  `prom/prometheus` (entrypoint /bin/prometheus, config /etc/prometheus, data /prometheus, user
  nobody), so docker-compose.yml runs it unchanged through `PROMETHEUS_IMAGE`.
- `ensure_service_images`: stand-ins for `redis:7` and `haproxy:2.8`, made the same way from
  Debian's `redis-server` and `haproxy` packages (one root filesystem, cached as a tarball,
  imported twice): `redis-server` and `redis-cli` on the PATH, run as user redis; HAProxy's
  entrypoint and default command as in the official image (`haproxy -W -db -f
  /usr/local/etc/haproxy/haproxy.cfg`, user haproxy), so deploy/replicas/docker-compose.yml
  runs them unchanged through `REDIS_IMAGE` and `LB_IMAGE`.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.deploy.docker_engine import DockerEngine

__all__ = [
    "ensure_base_image",
    "ensure_prometheus_image",
    "ensure_service_images",
    "host_ca_certificates",
]

HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
SERVICE_PACKAGES = ("redis-server", "haproxy", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
IMPORT_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
#: Removed from the root filesystem before it is archived: not needed to run Python.
TRIM = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/locale",
    "usr/share/info",
)


def host_ca_certificates() -> list[Path]:
    return sorted(HOST_CA_DIR.glob("*.crt")) if HOST_CA_DIR.is_dir() else []


def _os_release() -> dict[str, str]:
    values = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = value.strip().strip('"')
    return values


def host_debian_mirror() -> str:
    """The host's Debian mirror (deb822 `URIs:` or a sources.list `deb` line)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        match = re.search(r"^URIs:\s*(\S+)", sources.read_text(), re.MULTILINE)
        if match:
            return match.group(1)
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        match = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", listing.read_text(), re.MULTILINE)
        if match:
            return match.group(1)
    return DEFAULT_MIRROR


def _image_exists(engine: DockerEngine, tag: str) -> bool:
    return engine.docker("image", "inspect", tag, check=False).returncode == 0


def ensure_base_image(engine: DockerEngine, cache_dir: Path) -> str:
    """Tag of the local Python base image; made with debootstrap the first time."""
    suite = _os_release().get("VERSION_CODENAME") or "bookworm"
    digest = hashlib.sha256(f"{suite}:{','.join(PACKAGES)}".encode()).hexdigest()[:12]
    tag = f"localhost/sse-gateway-base:{suite}-{digest}"
    if _image_exists(engine, tag):
        return tag
    tarball = _rootfs_tarball(cache_dir, "base", suite, PACKAGES)
    _import(engine, tarball, tag, IMPORT_CHANGES)
    return tag


def _rootfs_tarball(cache_dir: Path, name: str, suite: str, packages: tuple[str, ...]) -> Path:
    """`<cache>/<name>-<suite>-<digest>.tar`, a minbase root filesystem with `packages`;
    made by debootstrap the first time (older tarballs of `name` removed)."""
    digest = hashlib.sha256(f"{suite}:{','.join(packages)}".encode()).hexdigest()[:12]
    tarball = cache_dir / f"{name}-{suite}-{digest}.tar"
    if not tarball.exists():
        _debootstrap_tarball(suite, tarball, packages)
        for stale in cache_dir.glob(f"{name}-*.tar"):
            if stale != tarball:
                stale.unlink()
    return tarball


def _import(engine: DockerEngine, tarball: Path, tag: str, changes: tuple[str, ...]) -> None:
    engine.docker(
        "import",
        *(arg for change in changes for arg in ("-c", change)),
        str(tarball),
        tag,
        timeout=300,
    )


REDIS_CHANGES = (
    *IMPORT_CHANGES[:2],
    "USER redis",
    "WORKDIR /var/lib/redis",
    'CMD ["redis-server"]',
)
HAPROXY_CHANGES = (
    *IMPORT_CHANGES[:2],
    "USER haproxy",
    'ENTRYPOINT ["haproxy", "-W", "-db"]',
    'CMD ["-f", "/usr/local/etc/haproxy/haproxy.cfg"]',
)


def ensure_service_images(engine: DockerEngine, cache_dir: Path) -> tuple[str, str]:
    """Tags of the Redis and HAProxy stand-ins (Debian's packages); made the first time."""
    suite = _os_release().get("VERSION_CODENAME") or "bookworm"
    digest = hashlib.sha256(f"{suite}:{','.join(SERVICE_PACKAGES)}".encode()).hexdigest()[:12]
    tags = (
        f"localhost/sse-gateway-redis:{suite}-{digest}",
        f"localhost/sse-gateway-haproxy:{suite}-{digest}",
    )
    if all(_image_exists(engine, tag) for tag in tags):
        return tags
    tarball = _rootfs_tarball(cache_dir, "services", suite, SERVICE_PACKAGES)
    for tag, changes in zip(tags, (REDIS_CHANGES, HAPROXY_CHANGES), strict=True):
        _import(engine, tarball, tag, changes)
    return tags


def _debootstrap_tarball(suite: str, tarball: Path, packages: tuple[str, ...]) -> None:
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed (apt-get install debootstrap)")
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tarball.parent))
    rootfs = work / "rootfs"
    try:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                suite,
                str(rootfs),
                host_debian_mirror(),
            ],
            check=True,
            capture_output=True,
            timeout=900,
        )
        for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()  # an image's system Python is the image's own to install into
        for path in TRIM:
            shutil.rmtree(rootfs / path, ignore_errors=True)
        partial = tarball.with_suffix(".partial")
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."],
            check=True,
            capture_output=True,
            timeout=300,
        )
        partial.rename(tarball)  # only a complete archive ever carries the cache's name
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr.decode(errors="replace")[-3000:] if exc.stderr else ""
        raise RuntimeError(f"making the base image failed: {exc.cmd[0]}:\n{stderr}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


PROMETHEUS_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY prometheus /bin/prometheus
RUN mkdir -p /etc/prometheus /prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
"""


def ensure_prometheus_image(engine: DockerEngine, base_image: str) -> str:
    """Tag of a Prometheus image made of the host's binary (Debian package) on `base_image`."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed (apt-get install prometheus)")
    binary_digest = hashlib.sha256(Path(binary).read_bytes()).hexdigest()[:8]
    base_digest = base_image.rsplit("-", 1)[-1]
    tag = f"localhost/sse-gateway-prometheus:{binary_digest}-{base_digest}"
    if _image_exists(engine, tag):
        return tag
    with tempfile.TemporaryDirectory(prefix="prometheus-image-") as context:
        shutil.copy2(binary, Path(context) / "prometheus")
        (Path(context) / "Dockerfile").write_text(PROMETHEUS_DOCKERFILE)
        engine.docker(
            "build",
            "-q",
            "--build-arg",
            f"BASE_IMAGE={base_image}",
            "-t",
            tag,
            context,
            timeout=300,
        )
    return tag
