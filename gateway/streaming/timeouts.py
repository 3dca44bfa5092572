"""`Timeouts`: the per-phase limits of contract section 6, as one frozen value.

Like httpx's `Timeout`: functions take a `Context` plus this value, never a bare float. A limit
of None means "no limit" for that phase (the total deadline still bounds everything).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

__all__ = ["Timeouts"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds for each phase of an upstream call.

    - `connect`: TCP (+TLS) connect to the upstream;
    - `first_byte`: request sent -> first upstream event (first body bytes when not streaming);
    - `first_token`: request sent -> first event that carries answer content (text, a tool
      call, reasoning: not a preamble, a ping or an empty delta); unset by default;
    - `idle`: gap between two upstream events (the gateway's own heartbeats don't reset it);
    - `total`: the whole request, retries and backoff included.
    """

    connect: float | None = 5.0
    first_byte: float | None = 60.0
    first_token: float | None = None
    idle: float | None = 120.0
    total: float | None = 600.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None and not value > 0:
                raise ValueError(f"timeout {field.name} must be > 0 seconds, got {value!r}")

    def clamped(self, maxima: Timeouts) -> Timeouts:
        """Each limit capped by the same limit of `maxima` (None in maxima means uncapped)."""
        capped = {}
        for field in fields(self):
            value, ceiling = getattr(self, field.name), getattr(maxima, field.name)
            if ceiling is not None and (value is None or value > ceiling):
                capped[field.name] = ceiling
        return replace(self, **capped) if capped else self

    def with_overrides(self, **overrides: float | None) -> Timeouts:
        """A copy with the given limits replaced (keys are field names)."""
        return replace(self, **overrides) if overrides else self
