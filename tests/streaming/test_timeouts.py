"""`Timeouts`: the four per-phase limits as one frozen value (contract section 6)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from gateway.streaming import Timeouts


def test_defaults_are_the_contracts_suggested_limits():
    assert Timeouts() == Timeouts(connect=5.0, first_byte=60.0, idle=120.0, total=600.0)


def test_timeouts_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Timeouts().idle = 1.0  # type: ignore[misc]


def test_none_means_no_limit_for_that_phase():
    timeouts = Timeouts(connect=None, first_byte=None, idle=None, total=None)
    assert (timeouts.connect, timeouts.first_byte, timeouts.idle, timeouts.total) == (
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize("field", ["connect", "first_byte", "idle", "total"])
@pytest.mark.parametrize("value", [0, 0.0, -1, -0.001, math.nan, -math.inf])
def test_non_positive_limits_are_rejected_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        Timeouts(**{field: value})


def test_tiny_and_infinite_positive_limits_are_accepted():
    assert Timeouts(idle=1e-9).idle == 1e-9
    assert Timeouts(total=math.inf).total == math.inf


def test_clamped_caps_each_limit_by_the_same_maximum():
    requested = Timeouts(connect=1, first_byte=90, idle=10, total=1000)
    maxima = Timeouts(connect=5, first_byte=60, idle=120, total=600)
    assert requested.clamped(maxima) == Timeouts(connect=1, first_byte=60, idle=10, total=600)


def test_clamped_turns_no_limit_into_the_maximum():
    requested = Timeouts(first_byte=None, idle=None)
    assert requested.clamped(Timeouts(first_byte=30, idle=None)) == Timeouts(
        first_byte=30, idle=None
    )


def test_clamped_by_no_maxima_changes_nothing():
    requested = Timeouts(connect=50, first_byte=None, idle=500, total=None)
    unbounded = Timeouts(connect=None, first_byte=None, idle=None, total=None)
    assert requested.clamped(unbounded) is requested


def test_with_overrides_replaces_only_the_given_limits():
    base = Timeouts()
    assert base.with_overrides() is base
    assert base.with_overrides(first_byte=10, idle=None) == Timeouts(first_byte=10, idle=None)
    assert base.first_byte == 60.0  # the original is untouched


def test_with_overrides_validates_the_new_values():
    with pytest.raises(ValueError, match="idle"):
        Timeouts().with_overrides(idle=0)


def test_with_overrides_rejects_unknown_limits():
    with pytest.raises(TypeError):
        Timeouts().with_overrides(read=5)


def test_overrides_then_clamp_is_how_per_request_headers_apply():
    route_maxima = Timeouts(first_byte=30, idle=60, total=300)
    from_headers = Timeouts().with_overrides(first_byte=10, idle=600)
    assert from_headers.clamped(route_maxima) == Timeouts(first_byte=10, idle=60, total=300)
