"""The `cors` section: origins are validated when the settings load and kept in the canonical
form a browser's `Origin` header has; header names in lower case, methods in upper case; `*`
never with credentials; Private Network Access off by default."""

from __future__ import annotations

import os

import pytest

from gateway.settings import ConfigError, load_settings
from gateway.settings.cors import (
    DEFAULT_ALLOW_HEADERS,
    DEFAULT_ALLOW_METHODS,
    DEFAULT_EXPOSE_HEADERS,
    parse_origin,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)


def fields_of(raised: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [problem.field for problem in raised.value.problems]


def test_no_origins_by_default_and_the_sdk_headers_allowed_and_exposed() -> None:
    cors = load_settings().cors

    assert cors.allow_origins == []
    assert not cors.enabled
    assert (cors.max_age, cors.allow_credentials) == (600, False)
    assert set(cors.allow_headers) == set(DEFAULT_ALLOW_HEADERS)
    assert {"authorization", "x-api-key", "anthropic-version", "x-stainless-*"} <= set(
        cors.allow_headers
    )
    assert {"x-gateway-idle-timeout", "x-request-id"} <= set(cors.allow_headers)
    assert cors.expose_headers == list(DEFAULT_EXPOSE_HEADERS)
    assert {"x-request-id", "request-id", "retry-after", "x-should-retry"} <= set(
        cors.expose_headers
    )


def test_origins_are_kept_in_the_form_browsers_send() -> None:
    cors = load_settings(
        cors={
            "allow_origins": [
                "HTTPS://App.Example.COM:443",
                "http://localhost:3000",
                "http://127.0.0.1:80",
                "https://*.Example.org",
                "https://app.example.com",
            ]
        }
    ).cors

    assert cors.allow_origins == [
        "https://app.example.com",
        "http://localhost:3000",
        "http://127.0.0.1",
        "https://*.example.org",
    ]
    assert cors.enabled


def test_origins_may_be_set_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_CORS__ALLOW_ORIGINS", '["https://app.example.com"]')
    monkeypatch.setenv("GATEWAY_CORS__ALLOW_CREDENTIALS", "true")

    cors = load_settings().cors

    assert (cors.allow_origins, cors.allow_credentials) == (["https://app.example.com"], True)


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com/",  # a path
        "https://app.example.com/v1",
        "https://app.example.com?x=1",
        "https://user@app.example.com",
        "app.example.com",  # no scheme
        "https://",
        "https://app.example.com:99999",
        "https://app.example.com:0",
        "https://*.com",  # every domain of a TLD
        "https://*example.com",
        "https://a.*.example.com",
        "https://*.*.example.com",
        "*.example.com",
        "null",
        "",
    ],
)
def test_a_malformed_origin_is_refused_at_load(origin: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(cors={"allow_origins": ["https://ok.example.com", origin]})

    assert fields_of(raised) == ["cors.allow_origins[1]"]


def test_any_origin_is_allowed_alone_and_only_without_credentials() -> None:
    assert load_settings(cors={"allow_origins": ["*"]}).cors.allow_origins == ["*"]

    with pytest.raises(ConfigError) as credentials:
        load_settings(cors={"allow_origins": ["*"], "allow_credentials": True})
    with pytest.raises(ConfigError) as mixed:
        load_settings(cors={"allow_origins": ["*", "https://app.example.com"]})

    assert fields_of(credentials) == ["cors.allow_origins"]
    assert "credentials" in str(credentials.value)
    assert fields_of(mixed) == ["cors.allow_origins"]


def test_exact_origins_go_with_credentials() -> None:
    cors = load_settings(
        cors={"allow_origins": ["https://*.example.com"], "allow_credentials": True}
    ).cors

    assert cors.allow_credentials


def test_header_names_are_lower_case_and_patterns_only_in_allow_headers() -> None:
    cors = load_settings(
        cors={
            "allow_origins": ["https://app.example.com"],
            "allow_headers": ["Content-Type", "X-Stainless-*", "content-type"],
            "expose_headers": ["X-Request-ID"],
        }
    ).cors

    assert cors.allow_headers == ["content-type", "x-stainless-*"]
    assert cors.expose_headers == ["x-request-id"]

    with pytest.raises(ConfigError) as raised:
        load_settings(
            cors={
                "allow_headers": ["ok", "bad header", "x-*-y"],
                "expose_headers": ["x-ratelimit-*", "a:b"],
            }
        )

    assert fields_of(raised) == ["cors.allow_headers[1]", "cors.expose_headers[0]"]
    with pytest.raises(ConfigError) as credentials:
        load_settings(cors={"expose_headers": ["*"], "allow_credentials": True})
    assert fields_of(credentials) == ["cors.expose_headers"]
    assert load_settings(cors={"expose_headers": ["*"]}).cors.expose_headers == ["*"]


def test_methods_default_to_the_gateways_and_private_network_access_is_off() -> None:
    cors = load_settings().cors

    assert cors.allow_methods == list(DEFAULT_ALLOW_METHODS) == ["GET", "POST", "DELETE"]
    assert not cors.allow_private_network


def test_methods_are_http_tokens_kept_in_upper_case() -> None:
    cors = load_settings(cors={"allow_methods": ["get", "PATCH", "Get", " post "]}).cors

    assert cors.allow_methods == ["GET", "PATCH", "POST"]

    with pytest.raises(ConfigError) as raised:
        load_settings(cors={"allow_methods": ["GET", "PO ST", "*", "", "GET/1", "PUT"]})

    assert fields_of(raised) == ["cors.allow_methods[1]"]  # the first problem of the list
    for bad in ("*", "", "GET/1", "P\u00d6ST", "po\u00dft"):  # "poßt" upper-cased is a token
        with pytest.raises(ConfigError) as each:
            load_settings(cors={"allow_methods": [bad]})
        assert fields_of(each) == ["cors.allow_methods[0]"], bad


@pytest.mark.parametrize("max_age", [-1, 86401])
def test_max_age_is_bounded(max_age: int) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(cors={"max_age": max_age})

    assert fields_of(raised) == ["cors.max_age"]


def test_parsing_an_origin_header_never_accepts_a_pattern() -> None:
    assert parse_origin("https://*.example.com") is None
    pattern = parse_origin("https://*.example.com", patterns=True)
    origin = parse_origin("https://a.example.com:8443")

    assert pattern is not None
    assert pattern.wildcard
    assert pattern.host == "example.com"
    assert origin is not None
    assert (origin.host, origin.port) == ("a.example.com", 8443)
    assert str(parse_origin("http://[::1]:8080")) == "http://[::1]:8080"
