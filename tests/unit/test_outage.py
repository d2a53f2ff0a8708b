"""The pure parts of riding out a database outage: retry delays, an outage's two ends, and
heartbeat freshness with the grace after an outage."""

from __future__ import annotations

import pytest

from controller.liveness import beat_fresh
from controller.outage import Outage, retry_delay_seconds


@pytest.mark.parametrize(
    ("attempt", "draw", "expected"),
    [(1, 0.0, 0.1), (1, 1.0, 0.2), (2, 1.0, 0.4), (5, 1.0, 3.2), (6, 1.0, 5.0), (60, 0.0, 2.5)],
)
def test_retry_delay_doubles_up_to_the_cap_with_jitter(
    attempt: int, draw: float, expected: float
) -> None:
    assert retry_delay_seconds(attempt, draw=lambda: draw) == pytest.approx(expected)


def test_an_outage_is_reported_once_at_each_end_and_its_seconds_summed() -> None:
    outage = Outage()
    assert outage.recovered(1.0) is None  # nothing to end
    assert outage.failed(10.0) is True
    assert outage.failed(11.0) is False  # a retry, not a new outage
    assert outage.total_seconds(12.0) == pytest.approx(2.0)
    assert outage.recovered(14.0) == pytest.approx(4.0)
    assert outage.recovered(15.0) is None
    assert outage.failed(20.0) is True
    assert outage.total_seconds(21.0) == pytest.approx(5.0)


def test_a_beat_gap_inside_the_observers_outage_is_no_evidence() -> None:
    assert beat_fresh(100.0, now=105.0, timeout_seconds=10.0)
    assert not beat_fresh(100.0, now=115.0, timeout_seconds=10.0)
    # the observer reached the database again at 112: a full timeout from then
    assert beat_fresh(100.0, now=115.0, timeout_seconds=10.0, grace_from=112.0)
    assert not beat_fresh(100.0, now=122.0, timeout_seconds=10.0, grace_from=112.0)
    assert not beat_fresh(None, now=115.0, timeout_seconds=10.0, grace_from=112.0)
