"""`make_stream_error` / `as_gateway_error` / `error_for_status` and `StreamError.to_sse_event`.

Classification is by exception type and HTTP status only (contract section 3); the six category
wire strings are the Go seed's; the seed's SSE frame is reproduced exactly.
"""

from __future__ import annotations

import asyncio
import inspect
import json

import pytest

import gateway.errors as errors_module
from gateway.errors import (
    APIError,
    Canceled,
    ClientDisconnected,
    ConnectFailed,
    ConnectionReset,
    DeadlineExceeded,
    ErrorCategory,
    GatewayError,
    GatewayTimeout,
    NetworkError,
    RateLimited,
    StreamInterrupted,
    UpstreamAuthFailed,
    UpstreamBadRequest,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
)
from gateway.streaming import (
    SSEDecoder,
    StreamError,
    as_gateway_error,
    error_for_status,
    make_stream_error,
)

GATEWAY_ERRORS = sorted(
    (
        cls
        for _, cls in inspect.getmembers(errors_module, inspect.isclass)
        if issubclass(cls, GatewayError) and cls.__module__ == errors_module.__name__
    ),
    key=lambda cls: cls.__name__,
)

CATEGORY_ROOTS = {
    GatewayTimeout: ErrorCategory.TIMEOUT,
    Canceled: ErrorCategory.CONTEXT_CANCELED,
    NetworkError: ErrorCategory.NETWORK,
    RateLimited: ErrorCategory.RATE_LIMIT,
    APIError: ErrorCategory.API_ERROR,
    StreamInterrupted: ErrorCategory.STREAM_INTERRUPTED,
}


class StatusError(Exception):
    """Duck-typed like an HTTP client's response error: only an int `.status`."""

    def __init__(self, status: int, text: str = "upstream said no") -> None:
        super().__init__(text)
        self.status = status


def test_the_six_category_wire_strings_are_the_seeds():
    assert sorted(category.value for category in ErrorCategory) == sorted(
        [
            "stream_interrupted",
            "api_error",
            "rate_limit",
            "network",
            "timeout",
            "context_canceled",
        ]
    )
    assert ErrorCategory.TIMEOUT == "timeout"  # type: ignore[comparison-overlap]  # a StrEnum: compares and formats as the string
    assert f"{ErrorCategory.CONTEXT_CANCELED}" == "context_canceled"


def test_every_error_class_is_exported_and_covered():
    values = {"ErrorCategory", "RateWindow"}  # not error classes
    exported = {name for name in errors_module.__all__ if name not in values}
    assert {cls.__name__ for cls in GATEWAY_ERRORS} == exported


@pytest.mark.parametrize("cls", GATEWAY_ERRORS, ids=lambda cls: cls.__name__)
def test_make_stream_error_keeps_the_category_and_code_of_every_gateway_error(cls):
    error = cls()
    stream_error = make_stream_error(error)
    assert stream_error.type is cls.category
    assert stream_error.code == cls.code
    assert stream_error.message == error.message
    assert stream_error.message  # every class has a human default message
    assert stream_error.param == cls.param  # the field it is about, where a class names one
    assert as_gateway_error(error) is error


@pytest.mark.parametrize("cls", GATEWAY_ERRORS, ids=lambda cls: cls.__name__)
def test_every_gateway_error_sits_under_the_root_of_its_category(cls):
    roots = [root for root in CATEGORY_ROOTS if issubclass(cls, root)]
    if cls is GatewayError:
        assert roots == []
        assert cls.category is ErrorCategory.STREAM_INTERRUPTED
        return
    assert len(roots) == 1
    assert cls.category is CATEGORY_ROOTS[roots[0]]
    if issubclass(cls, GatewayTimeout):
        assert issubclass(cls, TimeoutError)
        assert cls.http_status == 504


@pytest.mark.parametrize("category", list(ErrorCategory), ids=str)
def test_make_stream_error_covers_every_category(category):
    roots = [root for root, value in CATEGORY_ROOTS.items() if value is category]
    assert len(roots) == 1
    assert make_stream_error(roots[0]()).type is category


def test_make_stream_error_keeps_the_gateway_code_and_passes_on_the_providers_own():
    error = UpstreamBadRequest(
        "too many tokens", upstream_code="context_length_exceeded", param="messages"
    )
    assert make_stream_error(error) == StreamError(
        type=ErrorCategory.API_ERROR,
        message="too many tokens",
        code="upstream_bad_request",
        param="messages",
        provider_code="context_length_exceeded",
    )


def test_an_instance_may_carry_its_own_message():
    error = ClientDisconnected("gone while waiting", phase="first_byte")
    assert make_stream_error(error).message == "gone while waiting"
    assert error.phase == "first_byte"


@pytest.mark.parametrize(
    ("exc", "expected_cls", "category", "code"),
    [
        pytest.param(
            asyncio.CancelledError(), Canceled, "context_canceled", "context_canceled",
            id="cancelled",
        ),
        pytest.param(
            TimeoutError(), DeadlineExceeded, "timeout", "deadline_exceeded", id="timeout"
        ),
        pytest.param(
            ConnectionRefusedError(111, "refused"), ConnectFailed, "network", "connect_failed",
            id="refused",
        ),
        pytest.param(
            ConnectionResetError(104, "reset"), ConnectionReset, "network", "connection_reset",
            id="reset",
        ),
        pytest.param(
            BrokenPipeError(32, "pipe"), ConnectionReset, "network", "connection_reset",
            id="broken-pipe",
        ),
        pytest.param(
            ConnectionAbortedError(), ConnectionReset, "network", "connection_reset", id="aborted"
        ),
        pytest.param(OSError(5, "io"), NetworkError, "network", "network_error", id="oserror"),
        pytest.param(
            ValueError("secret http://internal:8000/key=sk-123"), StreamInterrupted,
            "stream_interrupted", "stream_interrupted", id="value-error",
        ),
        pytest.param(
            KeyError("x"), StreamInterrupted, "stream_interrupted", "stream_interrupted",
            id="key-error",
        ),
    ],
)  # fmt: skip
def test_make_stream_error_maps_stdlib_exceptions_by_type(exc, expected_cls, category, code):
    assert type(as_gateway_error(exc)) is expected_cls
    stream_error = make_stream_error(exc)
    assert stream_error.type == category
    assert stream_error.code == code
    assert str(exc) not in stream_error.message or not str(exc)


def test_a_foreign_exceptions_text_is_never_shown():
    exc = ValueError("Traceback: token sk-live-abc at https://upstream.internal/v1")
    message = make_stream_error(exc).message
    assert "sk-live" not in message
    assert "upstream.internal" not in message
    assert "Traceback" not in message


@pytest.mark.parametrize(
    ("status", "expected_cls", "category"),
    [
        (429, UpstreamRateLimited, "rate_limit"),
        (401, UpstreamAuthFailed, "api_error"),
        (403, UpstreamAuthFailed, "api_error"),
        (400, UpstreamBadRequest, "api_error"),
        (422, UpstreamBadRequest, "api_error"),
        (404, UpstreamRejected, "api_error"),
        (500, UpstreamServerError, "api_error"),
        (503, UpstreamServerError, "api_error"),
        (599, UpstreamServerError, "api_error"),
    ],
)
def test_an_exception_with_an_http_status_is_classified_by_the_status(
    status, expected_cls, category
):
    exc = StatusError(status)
    assert type(as_gateway_error(exc)) is expected_cls
    stream_error = make_stream_error(exc)
    assert stream_error.type == category
    assert stream_error.code == expected_cls.code
    assert type(error_for_status(status)) is expected_cls


@pytest.mark.parametrize("status", [200, 302, 399, 600, 1000])
def test_a_status_outside_the_error_range_is_not_an_http_error(status):
    assert type(as_gateway_error(StatusError(status))) is StreamInterrupted


@pytest.mark.parametrize("status", ["429", 429.0, None])
def test_a_status_that_is_not_an_int_is_ignored(status):
    exc = ValueError("rate limited")
    exc.status = status  # type: ignore[attr-defined]
    assert type(as_gateway_error(exc)) is StreamInterrupted


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(ValueError("429 rate limit EOF"), id="value-error-429-eof"),
        pytest.param(RuntimeError("unexpected EOF"), id="runtime-eof"),
        pytest.param(Exception("connection reset by peer; timeout; 503"), id="exception-words"),
        pytest.param(StatusError(500, "429 Too Many Requests"), id="status-500-text-429"),
    ],
)
def test_classification_never_depends_on_message_text(exc):
    expected = UpstreamServerError if isinstance(exc, StatusError) else StreamInterrupted
    assert type(as_gateway_error(exc)) is expected


def test_classification_of_a_gateway_error_ignores_its_message():
    assert make_stream_error(ConnectionReset("429 rate limit EOF")).code == "connection_reset"
    assert make_stream_error(UpstreamRateLimited("EOF")).type is ErrorCategory.RATE_LIMIT


def test_error_for_status_keeps_retry_after_and_messages_it_may_show():
    limited = error_for_status(429, "slow down", retry_after="7")
    assert isinstance(limited, UpstreamRateLimited)
    assert limited.retry_after == "7"
    assert limited.message == "slow down"
    assert error_for_status(400, "bad field").message == "bad field"
    assert error_for_status(502, "bad gateway").message == "bad gateway"


def test_error_for_status_hides_the_upstreams_auth_message():
    error = error_for_status(401, "invalid x-api-key sk-ant-123")
    assert "sk-ant" not in error.message
    assert error.http_status == 502


def test_error_for_status_below_400_is_a_generic_api_error():
    assert type(error_for_status(302)) is APIError


# --- the seed's SSE frame --------------------------------------------------------------------


def test_to_sse_event_is_exactly_the_seeds_frame():
    error = StreamError(type=ErrorCategory.NETWORK, message="boom", code="connection_reset")
    assert error.to_sse_event() == (
        'event: error\ndata: {"type": "network", "message": "boom"}\n\n'
    )


def test_to_sse_event_parses_back_to_the_category_and_message():
    error = make_stream_error(DeadlineExceeded(limit=600))
    frame = error.to_sse_event()
    assert frame.startswith("event: error\ndata: ")
    assert frame.endswith("\n\n")
    assert frame.count("\n") == 3
    events = SSEDecoder().feed(frame.encode())
    assert len(events) == 1
    assert events[0].event == "error"
    assert events[0].data is not None
    assert json.loads(events[0].data) == {"type": "timeout", "message": error.message}


def test_to_sse_event_cannot_be_broken_by_line_breaks_in_the_message():
    error = StreamError(
        type=ErrorCategory.API_ERROR,
        message="line one\r\nevent: done\n\ndata: [DONE]\u2028",
        code="upstream_status_5xx",
    )
    frame = error.to_sse_event()
    events = SSEDecoder().feed(frame.encode())
    assert len(events) == 1
    assert events[0].data is not None
    assert json.loads(events[0].data)["message"] == error.message
