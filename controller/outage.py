"""Riding out a database outage: the delay before the next attempt (capped exponential
backoff with full jitter, a pure function) and `Outage`, which tells when an outage began and
ended so that it is logged once at each end, not once per retry, and counted in seconds.

Used by the runner's writes (`controller.engine.writes`), the control loop, the workers, the
store's waits (`controller.store.retry`: `open_store`, `retry_unavailable`) and the API (health,
`dagloop_store_unavailable_seconds_total`); each keeps its own `Outage`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "FIRST_RETRY_SECONDS",
    "MAX_RETRY_SECONDS",
    "Outage",
    "retry_delay_seconds",
]

FIRST_RETRY_SECONDS = 0.2  # the first retry after a refused write
MAX_RETRY_SECONDS = 5.0  # the cap: a database back is noticed within this


def retry_delay_seconds(
    attempt: int,
    *,
    first_seconds: float = FIRST_RETRY_SECONDS,
    max_seconds: float = MAX_RETRY_SECONDS,
    draw: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, …): `first_seconds` doubled per
    attempt, capped at `max_seconds`, times a uniform draw in [0.5, 1) so that a hundred
    runners refused at one instant do not all come back at the next one."""
    ceiling = min(max_seconds, first_seconds * 2.0 ** max(0, attempt - 1))
    return ceiling * (0.5 + draw() / 2)


@dataclass
class Outage:
    """The state of one database as one process sees it: reachable, or out since `since`
    (monotonic seconds). `failed` and `recovered` return True only on the transition, for
    the one log line at each end; `total_seconds` is what the
    `dagloop_store_unavailable_seconds_total` counter reports."""

    since: float | None = None
    attempts: int = 0
    ended_seconds: float = 0.0  # summed length of the outages that ended

    def failed(self, now: float) -> bool:
        """A database operation failed at `now`; True when this starts an outage."""
        self.attempts += 1
        if self.since is not None:
            return False
        self.since = now
        return True

    def recovered(self, now: float) -> float | None:
        """A database operation succeeded at `now`; the outage's length when this ends one."""
        if self.since is None:
            return None
        length = max(0.0, now - self.since)
        self.ended_seconds += length
        self.since, self.attempts = None, 0
        return length

    def total_seconds(self, now: float) -> float:
        """Seconds without the database so far, the current outage included."""
        current = 0.0 if self.since is None else max(0.0, now - self.since)
        return self.ended_seconds + current

    def next_delay_seconds(self) -> float:
        """The wait before the next attempt of the current outage."""
        return retry_delay_seconds(max(1, self.attempts))
