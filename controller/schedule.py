"""Cron logic: when does a schedule fire, as UTC instants, correct across DST changes.

Pure (no clock reads, no I/O apart from locating the host's zone once): every function takes the
instants it reasons about. Called by the desired-state builder (which caches the next fire time
per DAG, see `TickCache`) and by `dagloop plan` (next fire time of every schedule).

Cron expressions are evaluated on the *wall clock* of their zone (`CRON_TZ=Zone expr`, else
`settings.tz` / `DAGU_TZ`, else the host's zone). Two wall-clock irregularities are resolved so:
- spring forward (a wall time that does not exist, e.g. 02:30 in Europe/Berlin on the last Sunday
  of March): the tick fires at the next valid instant, the end of the gap (03:00 CEST); several
  ticks falling into one gap fire once; expressions whose hour field is `*` drop gap ticks (every
  real hour still fires);
- fall back (a wall time that happens twice): the tick fires once, at its first occurrence — except
  for expressions whose hour field is `*` (hourly or more often), which keep firing on every real
  hour, the same rule as Vixie cron.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from model.specbase import split_cron  # pydantic-free: schedule readers must not import it

# How far wall time and UTC can disagree around a transition; candidates are generated from a
# wall-time window this much wider than asked, then filtered on the UTC instant.
_MARGIN = timedelta(hours=3)
# Fast path (`_fixed_offset`): windows up to this long with one UTC offset throughout; croniter
# starts this far before the window (it rounds its start) and candidates are filtered.
_FIXED_MAX_SPAN = timedelta(days=7)
_FIXED_STEP_BACK = timedelta(minutes=2)
# In a week with an offset change, `next_after` tries the next hour alone before the margin path.
_FIXED_SHORT_SPAN = timedelta(hours=1)


@lru_cache(maxsize=64)
def resolve_zone(name: str | None) -> ZoneInfo:
    """The zone named `name`, else the host's zone (`TZ`, then /etc/localtime), else UTC."""
    if name:
        return ZoneInfo(name)
    env_tz = os.environ.get("TZ", "").lstrip(":")
    if env_tz:
        try:
            return ZoneInfo(env_tz)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    localtime = Path("/etc/localtime")
    try:
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            return ZoneInfo(target.split("zoneinfo/", 1)[1])
        with localtime.open("rb") as fh:
            return ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@dataclass(frozen=True)
class CronSchedule:
    """One cron expression bound to its zone."""

    expression: str  # as written, e.g. "CRON_TZ=Europe/Berlin 30 2 * * *"
    cron: str  # the 5 fields
    zone: ZoneInfo
    hourly: bool = field(default=False)  # hour field is `*`: repeated wall hours fire again

    @classmethod
    def parse(cls, expression: str, *, default_zone: str | None = None) -> CronSchedule:
        """Bind `expression` to `CRON_TZ=` or `default_zone` (None: the host's zone)."""
        zone_name, cron = split_cron(expression)
        zone = resolve_zone(zone_name or default_zone)
        fields = cron.split()
        return cls(expression, cron, zone, hourly=len(fields) == 5 and fields[1] == "*")

    def _instants(self, wall: datetime) -> list[datetime]:
        """UTC instants at which the naive wall time `wall` fires (0..2 of them)."""
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        if first.astimezone(self.zone).replace(tzinfo=None) != wall:
            # A wall time inside a spring-forward gap: fire when the gap ends — unless the
            # expression fires every hour anyway, then the real hours keep their ticks.
            if self.hourly:
                return []
            return [_transition(self.zone, min(first, second), max(first, second))]
        if first == second or not self.hourly:
            return [min(first, second)]
        return sorted((first, second))

    def between(self, after: datetime, until: datetime) -> list[datetime]:
        """Fire instants `t` (aware UTC) with `after < t <= until`, sorted, without duplicates."""
        if until <= after:
            return []
        fixed = _fixed_offset(self.zone, after, until)
        if fixed is not None:
            return self._between_fixed(after, until, fixed)
        start = after.astimezone(self.zone).replace(tzinfo=None) - _MARGIN
        stop = until.astimezone(self.zone).replace(tzinfo=None) + _MARGIN
        it = _croniter_at(self.cron, start)
        out: set[datetime] = set()
        while True:
            wall = it.get_next(datetime)
            if wall > stop:
                break
            out.update(t for t in self._instants(wall) if after < t <= until)
        return sorted(out)

    def _between_fixed(self, after: datetime, until: datetime, offset: timedelta) -> list[datetime]:
        """`between` for a window in which the zone's UTC offset does not change: wall time
        is UTC + `offset` throughout, so no margin (hours of candidates of an every-minute
        expression) is needed, only a small step back for croniter's rounding."""
        start = after.astimezone(UTC).replace(tzinfo=None) + offset - _FIXED_STEP_BACK
        stop = until.astimezone(UTC).replace(tzinfo=None) + offset
        it = _croniter_at(self.cron, start)
        out: list[datetime] = []
        while True:
            wall = it.get_next(datetime)
            if wall > stop:
                return out
            t = (wall - offset).replace(tzinfo=UTC)
            if after < t <= until:
                out.append(t)

    def _first_fixed(self, after: datetime, until: datetime, offset: timedelta) -> datetime | None:
        """The first instant of `_between_fixed(after, until, offset)`, or None."""
        start = after.astimezone(UTC).replace(tzinfo=None) + offset - _FIXED_STEP_BACK
        it = _croniter_at(self.cron, start)
        while True:
            t = (it.get_next(datetime) - offset).replace(tzinfo=UTC)
            if t > until:
                return None
            if t > after:
                return t

    def next_after(self, after: datetime) -> datetime:
        """The first fire instant strictly after `after` (aware UTC)."""
        for window in (_FIXED_MAX_SPAN, _FIXED_SHORT_SPAN):
            fixed = _fixed_offset(self.zone, after, after + window)
            if fixed is not None:
                # One offset for the window: the first candidate is the answer (an
                # every-minute expression costs one croniter step, not hours of them). The
                # week of a DST change still has hours of one offset before it.
                first = self._first_fixed(after, after + window, fixed)
                if first is not None:
                    return first
                break
        span = timedelta(hours=1)
        while True:
            found = self.between(after, after + span)
            if found:
                return found[0]
            # Sparse schedules (yearly, Feb 29): widen the window geometrically.
            span *= 4
            if span > timedelta(days=366 * 9):
                raise ValueError(f"{self.expression!r} never fires")

    def previous_before(self, at: datetime) -> datetime | None:
        """The last fire instant strictly before `at`, or None within eight years."""
        span = timedelta(days=1)
        while span <= timedelta(days=366 * 9):
            found = [t for t in self.between(at - span, at) if t < at]
            if found:
                return found[-1]
            span *= 4
        return None


@lru_cache(maxsize=4096)
def _croniter_template(cron: str) -> croniter:
    return croniter(cron, datetime(2000, 1, 1))


def _croniter_at(cron: str, start: datetime) -> croniter:
    """A croniter of `cron` positioned at `start`: a copy of one parsed template per
    expression (parsing is most of the cost of a fresh croniter; the copy shares the
    read-only expansion and owns its position)."""
    it = copy.copy(_croniter_template(cron))
    it.set_current(start, force=True)
    return it


def _fixed_offset(zone: ZoneInfo, after: datetime, until: datetime) -> timedelta | None:
    """The zone's UTC offset when it is the same over the whole window (plus the margin),
    else None. Windows longer than `_FIXED_MAX_SPAN` always take the general path: equal
    offsets at both ends of a short window mean no transition inside it (no zone changes its
    offset twice within a week)."""
    if until - after > _FIXED_MAX_SPAN:
        return None
    lo = (after - _MARGIN).astimezone(zone).utcoffset()
    hi = (until + _MARGIN).astimezone(zone).utcoffset()
    if lo is None or lo != hi:
        return None
    return lo


def _transition(zone: ZoneInfo, lo: datetime, hi: datetime) -> datetime:
    """The instant in (lo, hi] at which `zone`'s UTC offset changes (binary search, 1 s)."""
    target = hi.astimezone(zone).utcoffset()
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == target:
            hi_s = mid
        else:
            lo_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


def parse_all(expressions: Iterable[str], *, default_zone: str | None) -> tuple[CronSchedule, ...]:
    """`CronSchedule.parse` of each expression."""
    return tuple(CronSchedule.parse(e, default_zone=default_zone) for e in expressions)


def due_ticks(
    schedules: Iterable[CronSchedule], *, after: datetime, until: datetime
) -> list[datetime]:
    """Fire instants of any of `schedules` in (after, until], merged and deduplicated."""
    out: set[datetime] = set()
    for s in schedules:
        out.update(s.between(after, until))
    return sorted(out)


def next_fire(schedules: Iterable[CronSchedule], *, after: datetime) -> datetime | None:
    """The earliest instant after `after` at which any of `schedules` fires, or None."""
    found = [s.next_after(after) for s in schedules]
    return min(found) if found else None


@dataclass
class TickCache:
    """Per-DAG memo of recent and next fire instants, so a pass does not run croniter for
    every DAG: while `next_at` is in the future nothing is computed.

    Owned by the desired-state builder; rebuilt for a DAG when its file (or base.yaml) changes.
    """

    schedules: tuple[CronSchedule, ...]
    window: timedelta  # how far back ticks are remembered (catch-up window, at least a minute)
    next_at: datetime | None = None
    recent: list[datetime] = field(default_factory=list)
    following: datetime | None = None  # the fire after `next_at`, computed ahead (`look_ahead`)

    def look_ahead(self) -> None:
        """Find the fire after `next_at` now, ahead of its instant: the pass at that instant
        then advances without a croniter step (fifty DAGs firing at one minute boundary
        cost the pass that launches them ~5 ms)."""
        if self.following is None and self.next_at is not None:
            self.following = next_fire(self.schedules, after=self.next_at)

    def _advance(self) -> datetime | None:
        """The fire after `next_at` (from `look_ahead` if it was done)."""
        assert self.next_at is not None
        following, self.following = self.following, None
        return following if following is not None else next_fire(self.schedules, after=self.next_at)

    def ticks(self, now: datetime) -> list[datetime]:
        """Fire instants in (now - window, now]; advances the memo."""
        if not self.recent and self.next_at is not None and now < self.next_at:
            return []  # the common case: nothing fired since the last look
        lower = now - self.window
        if self.next_at is None or self.next_at <= lower:
            # Walk from the window's start: the first instant after it is a recent tick or the
            # next one (one croniter step for a daily schedule instead of two).
            self.recent = []
            self.following = None
            t = next_fire(self.schedules, after=lower)
            while t is not None and t <= now:
                self.recent.append(t)
                t = next_fire(self.schedules, after=t)
            self.next_at = t
        else:
            while self.next_at is not None and self.next_at <= now:
                self.recent.append(self.next_at)
                self.next_at = self._advance()
        self.recent = [t for t in self.recent if lower < t <= now]
        return list(self.recent)
