"""Cron fire times across DST changes, multiple expressions and CRON_TZ (controller.schedule)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.schedule import CronSchedule, TickCache, due_ticks, next_fire, parse_all


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def test_berlin_spring_forward_fires_once_at_end_of_gap() -> None:
    s = CronSchedule.parse("30 2 * * *", default_zone="Europe/Berlin")
    got = s.between(utc(2026, 3, 28, 12), utc(2026, 3, 30, 12))
    # 28th 02:30 CET is before the window; 29th 02:30 does not exist -> 03:00 CEST = 01:00 UTC
    assert got == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]


def test_berlin_fall_back_fires_once() -> None:
    s = CronSchedule.parse("30 2 * * *", default_zone="Europe/Berlin")
    got = s.between(utc(2026, 10, 24, 12), utc(2026, 10, 26, 12))
    # 02:30 happens twice on the 25th (00:30 and 01:30 UTC): only the first fires
    assert got == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_hourly_keeps_every_real_hour_on_fall_back_and_drops_gap() -> None:
    s = CronSchedule.parse("30 * * * *", default_zone="Europe/Berlin")
    back = s.between(utc(2026, 10, 24, 23, 59), utc(2026, 10, 25, 2, 59))
    assert back == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 2, 30)]
    fwd = s.between(utc(2026, 3, 28, 23, 59), utc(2026, 3, 29, 2, 59))
    assert fwd == [utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 2, 30)]


def test_injected_clock_walk_over_dst_days_fires_each_day_once() -> None:
    """Step a fake clock minute by minute across both transitions, as the loop would."""
    for start in (utc(2026, 3, 28, 20), utc(2026, 10, 24, 20)):
        scheds = parse_all(["30 2 * * *"], default_zone="Europe/Berlin")
        cache = TickCache(scheds, timedelta(seconds=60))
        fired: set[datetime] = set()
        now = start
        while now < start + timedelta(hours=12):
            fired.update(cache.ticks(now))
            now += timedelta(minutes=1)
        assert len(fired) == 1, fired


def test_cron_tz_overrides_default_zone() -> None:
    s = CronSchedule.parse("CRON_TZ=America/New_York 0 9 * * *", default_zone="Europe/Berlin")
    assert s.next_after(utc(2026, 1, 5, 0)) == utc(2026, 1, 5, 14)


def test_multiple_expressions_merge_and_dedupe() -> None:
    scheds = parse_all(["0 * * * *", "0 */2 * * *", "15 3 * * *"], default_zone="UTC")
    got = due_ticks(scheds, after=utc(2026, 1, 1, 2, 30), until=utc(2026, 1, 1, 4, 0))
    assert got == [utc(2026, 1, 1, 3), utc(2026, 1, 1, 3, 15), utc(2026, 1, 1, 4)]
    assert next_fire(scheds, after=utc(2026, 1, 1, 3)) == utc(2026, 1, 1, 3, 15)


def test_previous_before_and_sparse_schedule() -> None:
    s = CronSchedule.parse("0 0 29 2 *", default_zone="UTC")
    assert s.next_after(utc(2026, 3, 1)) == utc(2028, 2, 29)
    assert CronSchedule.parse("0 12 * * *", default_zone="UTC").previous_before(
        utc(2026, 1, 2, 12)
    ) == utc(2026, 1, 1, 12)


def test_tick_cache_keeps_ticks_within_window_and_advances() -> None:
    cache = TickCache(parse_all(["* * * * *"], default_zone="UTC"), timedelta(seconds=60))
    assert cache.ticks(utc(2026, 1, 1, 0, 0, 30)) == [utc(2026, 1, 1, 0, 0)]
    assert cache.next_at == utc(2026, 1, 1, 0, 1)
    assert cache.ticks(utc(2026, 1, 1, 0, 1, 0)) == [utc(2026, 1, 1, 0, 1)]
    # a catch-up window returns every missed tick after a gap
    wide = TickCache(parse_all(["*/10 * * * *"], default_zone="UTC"), timedelta(minutes=30))
    assert wide.ticks(utc(2026, 1, 1, 1, 0, 5)) == [
        utc(2026, 1, 1, 0, 40),
        utc(2026, 1, 1, 0, 50),
        utc(2026, 1, 1, 1, 0),
    ]


def test_tick_cache_looking_ahead_gives_the_same_ticks_across_dst() -> None:
    """`look_ahead` (done by the loop before an instant) changes no tick, also when the
    instant after next is across a DST change; the look-ahead is used once, then dropped."""
    for start in (utc(2026, 3, 28, 20), utc(2026, 10, 24, 20)):
        scheds = parse_all(["30 1,2,3 * * *", "*/45 * * * *"], default_zone="Europe/Berlin")
        plain, ahead = (
            TickCache(scheds, timedelta(seconds=60)),
            TickCache(scheds, timedelta(seconds=60)),
        )
        now = start
        while now < start + timedelta(hours=10):
            ahead.look_ahead()
            assert ahead.ticks(now) == plain.ticks(now)
            assert ahead.next_at == plain.next_at
            now += timedelta(minutes=5)
    cache = TickCache(parse_all(["0 * * * *"], default_zone="UTC"), timedelta(seconds=60))
    cache.ticks(utc(2026, 1, 1, 0, 30))
    cache.look_ahead()
    assert cache.following == utc(2026, 1, 1, 2)
    assert cache.ticks(utc(2026, 1, 1, 1)) == [utc(2026, 1, 1, 1)]
    assert (cache.next_at, cache.following) == (utc(2026, 1, 1, 2), None)


def test_fixed_offset_fast_path_agrees_with_the_general_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Windows without an offset change skip the ±3 h candidate margin; same answers."""
    import random

    from controller import schedule

    exprs = ["* * * * *", "*/7 * * * *", "30 2 * * *", "0 */3 * * *", "15 1 * * 0", "5 4 L * *"]
    zones = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
    spans = [30, 60, 3600, 86400, 7 * 86400]
    rnd = random.Random(7)
    cases = []
    for _ in range(300):
        expr = rnd.choice(exprs)
        s = CronSchedule.parse(expr, default_zone=rnd.choice(zones))
        at = utc(2026, 1, 1) + timedelta(seconds=rnd.randint(0, 366 * 86400), microseconds=5)
        # the every-minute schedules keep to spans of an hour (a week of them is 10,080 ticks
        # on each path); the DST days below cross every offset change with them
        span = rnd.choice(spans if expr not in exprs[:2] else spans[:3])
        cases.append((s, at, at + timedelta(seconds=span)))
    # every DST day of 2026 in Berlin and New York
    for day in (utc(2026, 3, 8, 6), utc(2026, 3, 29, 0), utc(2026, 10, 25, 0), utc(2026, 11, 1, 5)):
        for e in exprs:
            for z in zones:
                cases.append((CronSchedule.parse(e, default_zone=z), day, day + timedelta(hours=3)))
    fast = [(s.between(a, b), s.next_after(a)) for s, a, b in cases]
    monkeypatch.setattr(schedule, "_fixed_offset", lambda *_: None)
    slow = [(s.between(a, b), s.next_after(a)) for s, a, b in cases]
    assert fast == slow
