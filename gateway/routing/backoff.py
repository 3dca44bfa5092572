"""`RetryPolicy`: how often one target is tried for one request, and how long to wait between.

The wait before a retry is the upstream's own hint when it gave one (`Retry-After` in seconds
or as a date, `retry-after-ms`), honoured as given; otherwise exponential backoff with full
jitter (AWS's "full jitter": uniform between 0 and `min(backoff_max, backoff_initial * 2^n)`),
so that clients failing together do not retry together. A hint longer than `retry_after_max`
is not waited for at all (`delay()` returns None): the target said it will not be ready soon,
and the request is better served by the next target, or by the client, who gets the hint.

The caller also refuses a wait that would not end before the request's total deadline; the
policy itself knows nothing of deadlines or clocks, so it is a pure function of its inputs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from gateway.errors import GatewayError, RateLimited

__all__ = ["RetryPolicy", "retry_hint"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts per target (the first included) and the waits between them, in seconds."""

    attempts: int = 3
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    retry_after_max: float = 20.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if not (self.backoff_initial > 0 and self.backoff_max > 0):
            raise ValueError("backoff_initial and backoff_max must be > 0")
        if self.retry_after_max < 0:
            raise ValueError("retry_after_max must be >= 0")

    def delay(self, error: GatewayError, retry: int, rng: random.Random) -> float | None:
        """Seconds to wait before retry number `retry` (1 for the first) of the same target
        after `error`; None when the upstream asked for more than `retry_after_max`."""
        hint = retry_hint(error)
        if hint is not None:
            return hint if hint <= self.retry_after_max else None
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** (retry - 1))
        return rng.uniform(0.0, ceiling)


def retry_hint(error: GatewayError) -> float | None:
    """The wait the upstream asked for, in seconds, if it asked."""
    if error.retry_delay is not None:
        return error.retry_delay
    if isinstance(error, RateLimited) and error.retry_after and error.retry_after.isdigit():
        return float(error.retry_after)  # a provider that gave only the header's text
    return None
