"""Scenario 30 of issue 8: `30 2 * * *` in Europe/Berlin over DST changes, with a fake clock.

Policy (docs/compatibility.md): on the spring-forward day the 02:30 that does not exist runs
once at the end of the gap (03:00 local); on the fall-back day the 02:30 that happens twice runs
once (the first); instants are stored in UTC (`scheduled_at`), the zone is the DAG's or
`CRON_TZ=`. The schedule tests of tests/unit prove the rule; they are collected here too, so
the fault list is complete in one directory, plus the loop over the spring-forward day."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.loop.controller import Controller
from controller.store.filters import RunFilter
from model.config import load_settings
from tests.faults.conftest import HEARTBEAT_TIMEOUT, Clock
from tests.faults.invariants import assert_invariants
from tests.helpers import wait_until
from tests.unit.test_schedule import (
    test_berlin_fall_back_fires_once as test_30_berlin_fall_back_fires_once,
)
from tests.unit.test_schedule import (
    test_berlin_spring_forward_fires_once_at_end_of_gap as test_30_spring_forward_end_of_gap,
)
from tests.unit.test_schedule import (
    test_injected_clock_walk_over_dst_days_fires_each_day_once as test_30_walk_over_dst_days,
)

__all__ = [
    "test_30_berlin_fall_back_fires_once",
    "test_30_spring_forward_end_of_gap",
    "test_30_walk_over_dst_days",
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("day", "expected_utc"),
    [
        # 2026-03-29: 02:00 -> 03:00 CEST; 02:30 does not exist -> 03:00 CEST = 01:00 UTC
        ((2026, 3, 29), [datetime(2026, 3, 29, 1, 0, tzinfo=UTC)]),
        # 2026-10-25: 03:00 -> 02:00 CET; 02:30 happens twice -> once, at 02:30 CEST = 00:30 UTC
        ((2026, 10, 25), [datetime(2026, 10, 25, 0, 30, tzinfo=UTC)]),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_30_loop_runs_once_on_dst_days(
    loop_home: Path, day: tuple[int, int, int], expected_utc: list[datetime]
) -> None:
    (loop_home / "dags" / "dst.yaml").write_text(
        'schedule: "CRON_TZ=Europe/Berlin 30 2 * * *"\nsteps:\n  - command: "true"\n'
    )
    y, m, d = day
    clock = Clock(datetime(y, m, d - 1, 23, 0, tzinfo=UTC).timestamp())
    c = Controller(load_settings(), clock=clock)
    c.refresh_catalog(force=True)
    end = datetime(y, m, d, 3, 0, tzinfo=UTC).timestamp()
    while clock.t < end:  # walk the night in 5-minute steps (every tick is seen)
        c.pass_once()
        clock.t += 300
    wait_until(
        lambda: (
            (c.pass_once() or True)
            and all(r.status.is_final() for r in c.store.list_runs(RunFilter(dag_name="dst")))
        ),
        20,
    )
    got = sorted(r.scheduled_at or 0 for r in c.store.list_runs(RunFilter(dag_name="dst")))
    assert got == [t.timestamp() for t in expected_utc]
    for p in c.applier.running_children():
        p.wait(timeout=10)
    c.store.close()
    assert_invariants(loop_home, heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)
