# sse-gateway container image.
#
#   docker build -t sse-gateway .
#   docker run --rm -p 127.0.0.1:8080:8080 sse-gateway        # built-in mock provider
#
# BASE_IMAGE: any Debian-based Python >= 3.11 image with ca-certificates (the default, or an
# air-gapped stand-in: docker build --build-arg BASE_IMAGE=localhost/pybase:bookworm .).
# Extra CA certificates (a corporate or intercepting HTTPS proxy): put PEM files named *.crt in
# docker/ca-certificates/ before building; pip trusts them while building and the gateway trusts
# them for its upstream connections. See deploy/README.md.
#
# Only the classic Dockerfile syntax is used (no BuildKit-only flags), so the image builds with
# `docker build`, BuildKit, docker-compose 1.29 and compose v2 alike.

ARG BASE_IMAGE=python:3.12-slim

# ---- builder: a virtualenv holding the gateway and its runtime dependencies (no dev extras) ----
FROM ${BASE_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PYTHONDONTWRITEBYTECODE=1

COPY docker/ca-certificates/ /tmp/extra-ca/
RUN set -eu; \
    if ls /tmp/extra-ca/*.crt >/dev/null 2>&1; then \
        mkdir -p /usr/local/share/ca-certificates/sse-gateway; \
        cp /tmp/extra-ca/*.crt /usr/local/share/ca-certificates/sse-gateway/; \
        update-ca-certificates >/dev/null; \
    fi; \
    rm -rf /tmp/extra-ca; \
    python3 -m venv /opt/venv

WORKDIR /src
# Dependencies first, in their own layer: rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt

COPY README.md ./
COPY gateway ./gateway
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/gateway --version

# ---- runtime: the base image, the virtualenv, a non-root user ----
FROM ${BASE_IMAGE}

COPY docker/ca-certificates/ /tmp/extra-ca/
RUN set -eu; \
    if ls /tmp/extra-ca/*.crt >/dev/null 2>&1; then \
        mkdir -p /usr/local/share/ca-certificates/sse-gateway; \
        cp /tmp/extra-ca/*.crt /usr/local/share/ca-certificates/sse-gateway/; \
        update-ca-certificates >/dev/null; \
    fi; \
    rm -rf /tmp/extra-ca; \
    groupadd --system --gid 10001 gateway; \
    useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin gateway

COPY --from=builder /opt/venv /opt/venv

# The environment beats a config file (GATEWAY_CONFIG): change the port with
# GATEWAY_LISTEN__PORT, which the health check reads too. /metrics is served on a port of its
# own (9464, for Prometheus; keep it off the public network): there it needs no gateway key,
# while the API port serves no /metrics at all.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_LISTEN__HOST=0.0.0.0 \
    GATEWAY_LISTEN__PORT=8080 \
    GATEWAY_METRICS__LISTEN__HOST=0.0.0.0 \
    GATEWAY_METRICS__LISTEN__PORT=9464 \
    GATEWAY_LOG__FORMAT=json

USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 9464

# Python only: slim images have no curl. Liveness, not readiness (a draining gateway is healthy).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GATEWAY_LISTEN__PORT', '8080'), timeout=2)"]

# Exec form: the gateway is PID 1 and receives SIGTERM itself (it drains, then exits).
ENTRYPOINT ["/opt/venv/bin/gateway"]
CMD []
