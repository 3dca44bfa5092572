"""No fragment of a secret in a log line or in the metrics exposition, whatever carried it."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from gateway.observability import Metrics, configure_logging
from gateway.redaction import Redactor

KEY = "sk-proj-Qw3Er5Ty7Ui9Op1As3Df5Gh7Jk9Lz2Xc4Vb6Nm8"
BODY = KEY.removeprefix("sk-proj-")
REDACTOR = Redactor([KEY])


@pytest.fixture(params=["json", "console"])
def log_stream(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging("debug", request.param, buffer, redactor=REDACTOR)
    yield buffer
    logging.captureWarnings(False)
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)


def test_log_lines_carry_no_fragment_of_a_secret_in_any_field(log_stream: io.StringIO) -> None:
    log = structlog.get_logger("t")
    log.info("upstream_said", message=f"bad key {BODY}", nested={"code": KEY[-10:]})
    log.warning("listed", items=[KEY, "fine"])
    try:
        raise ValueError(f"while calling with {KEY}")
    except ValueError:
        log.exception("handler_failed")
    logging.getLogger("aiohttp.client").warning("library says %s", BODY[3:20])
    text = log_stream.getvalue()
    assert len(text.splitlines()) >= 4
    for start in range(len(BODY) - 8 + 1):
        assert BODY[start : start + 8] not in text
    assert text.count("[redacted]") >= 5
    assert "upstream_said" in text
    assert "fine" in text


def test_metrics_exposition_carries_no_fragment_of_a_secret() -> None:
    metrics = Metrics()
    metrics.requests.labels("chat", f"route-{BODY[:12]}", "completed").inc()
    plain, _ = metrics.exposition()
    assert BODY[:12].encode() in plain  # there to be found
    redacted, _ = metrics.exposition(redactor=REDACTOR)
    assert BODY[:12].encode() not in redacted
    assert b'route="route[redacted]"' in redacted  # the dash is part of the key too
