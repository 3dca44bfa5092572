"""`FailurePolicy.decide`: retry the same target, fail over, or stop - by type, then by the
route's own lists of codes (`propagate` wins over `failover_on`, which wins over the default)."""

from __future__ import annotations

import pytest

from gateway.errors import (
    ClientDisconnected,
    ConnectFailed,
    ConnectionReset,
    ConnectTimeout,
    DeadlineExceeded,
    FirstByteTimeout,
    GatewayError,
    GatewayOverloaded,
    RequestTooLarge,
    ServerShutdown,
    UpstreamAuthFailed,
    UpstreamBadRequest,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamRetryableStatus,
    UpstreamServerError,
    UpstreamTruncated,
)
from gateway.routing.policy import Decision, FailurePolicy, hurts_target

RETRY, FAILOVER, STOP = Decision.RETRY, Decision.FAILOVER, Decision.STOP


@pytest.mark.parametrize(
    ("error", "decision"),
    [
        (ConnectFailed(), RETRY),
        (ConnectTimeout(), RETRY),
        (ConnectionReset(), RETRY),  # before the response headers, or before the first event
        (UpstreamTruncated(), RETRY),  # ended before its first event
        (UpstreamServerError(), RETRY),  # 5xx, 529
        (UpstreamRetryableStatus(), RETRY),  # 408, 409
        (UpstreamRateLimited(), RETRY),  # 429
        (FirstByteTimeout(), FAILOVER),  # a silent target is not asked again
        (GatewayOverloaded(), FAILOVER),  # its connection pool is full
        (UpstreamAuthFailed(), FAILOVER),
        (UpstreamRejected(), FAILOVER),  # 404 model unknown there...
        (UpstreamProtocolError(), FAILOVER),
        (UpstreamBadRequest(upstream_code="invalid_value"), STOP),  # 400/422
        (RequestTooLarge(), STOP),  # 413
        (DeadlineExceeded(), STOP),
        (ClientDisconnected(), STOP),
        (ServerShutdown(), STOP),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, GatewayError) else str(value),
)
def test_default_decisions(error: GatewayError, decision: Decision) -> None:
    assert FailurePolicy().decide(error) is decision


def test_failover_on_names_a_providers_code_or_the_gateways() -> None:
    codes = frozenset({"context_length_exceeded", "upstream_status_5xx"})
    policy = FailurePolicy(failover_on=codes)
    assert policy.decide(UpstreamBadRequest(upstream_code="context_length_exceeded")) is FAILOVER
    assert policy.decide(UpstreamBadRequest(upstream_code="invalid_value")) is STOP
    assert policy.decide(UpstreamServerError()) is FAILOVER  # no retry of that target


def test_propagate_wins_over_every_other_rule() -> None:
    codes = frozenset({"content_policy_violation", "upstream_status_5xx"})
    policy = FailurePolicy(failover_on=codes, propagate=codes)
    assert policy.decide(UpstreamBadRequest(upstream_code="content_policy_violation")) is STOP
    assert policy.decide(UpstreamServerError()) is STOP
    assert policy.decide(UpstreamRateLimited()) is RETRY


def test_the_end_of_the_request_is_never_overridden() -> None:
    policy = FailurePolicy(failover_on=frozenset({"deadline_exceeded", "client_disconnected"}))
    assert policy.decide(DeadlineExceeded()) is STOP
    assert policy.decide(ClientDisconnected()) is STOP


def test_only_the_targets_own_faults_hurt_it() -> None:
    hurt = [
        ConnectFailed(),
        FirstByteTimeout(),
        UpstreamServerError(),
        UpstreamRateLimited(),
        UpstreamAuthFailed(),
        UpstreamTruncated(),
    ]
    spared = [
        UpstreamBadRequest(),
        RequestTooLarge(),
        DeadlineExceeded(),
        ClientDisconnected(),
        ServerShutdown(),
    ]
    assert all(hurts_target(error) for error in hurt)
    assert not any(hurts_target(error) for error in spared)
