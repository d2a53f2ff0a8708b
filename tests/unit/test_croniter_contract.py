"""What `controller.schedule` relies on in croniter, pinned so an upgrade that changes it fails
here rather than in a schedule.

`schedule` parses each expression once and positions shallow copies of that template
(`copy.copy` + `set_current(start, force=True)`), which holds only while a croniter keeps its
position in its own attributes and never mutates the parsed fields it shares; it feeds naive wall
times and reads naive wall times back, strictly after a start it may round; `model.spec` asks
`croniter.is_valid` about 5-field expressions. pyproject.toml bounds croniter below the next
major version; raise the bound only with these tests passing.
"""

from __future__ import annotations

import copy
import tomllib
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

import pytest
from croniter import croniter
from packaging.requirements import Requirement

from controller.schedule import _croniter_at


def _fresh(cron: str, start: datetime, count: int) -> list[datetime]:
    it = croniter(cron, start)
    return [it.get_next(datetime) for _ in range(count)]


def test_copies_of_a_template_keep_their_own_positions() -> None:
    template = croniter("*/15 9-17 * * 1-5", datetime(2000, 1, 1))
    a, b = copy.copy(template), copy.copy(template)
    a.set_current(datetime(2026, 3, 6, 17, 40), force=True)  # a Friday afternoon
    b.set_current(datetime(2026, 3, 9, 8, 0), force=True)  # the Monday after
    got_a, got_b = [], []
    for _ in range(3):  # interleaved: one copy moving must not move the other
        got_a.append(a.get_next(datetime))
        got_b.append(b.get_next(datetime))
    assert got_a == _fresh("*/15 9-17 * * 1-5", datetime(2026, 3, 6, 17, 40), 3)
    assert got_b == _fresh("*/15 9-17 * * 1-5", datetime(2026, 3, 9, 8, 0), 3)
    assert got_a[1] == datetime(2026, 3, 9, 9, 0)  # over the weekend
    # the template itself did not move
    assert template.get_next(datetime) == datetime(2000, 1, 3, 9, 0)


def test_next_is_a_naive_wall_time_strictly_after_the_start() -> None:
    it = _croniter_at("30 2 * * *", datetime(2026, 3, 29, 2, 30))
    nxt = it.get_next(datetime)
    assert nxt == datetime(2026, 3, 30, 2, 30) and nxt.tzinfo is None


def test_a_start_between_minutes_rounds_forward_never_back() -> None:
    # `schedule` steps back `_FIXED_STEP_BACK` before its window for this rounding
    it = _croniter_at("* * * * *", datetime(2026, 1, 1, 10, 0, 30, 500))
    assert it.get_next(datetime) == datetime(2026, 1, 1, 10, 1)


@pytest.mark.parametrize(
    ("expr", "valid"),
    [
        ("0 9 * * 1-5", True),
        ("*/5 * * * *", True),
        ("0 0 29 2 *", True),
        ("0 0 * * 7", True),  # Sunday as 7, as Dagu
        ("61 * * * *", False),
        ("0 25 * * *", False),
        ("not a cron", False),
    ],
)
def test_is_valid_answers_as_model_spec_expects(expr: str, valid: bool) -> None:
    assert croniter.is_valid(expr) is valid


def test_croniter_is_bounded_to_the_versions_these_tests_pin() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    [req] = [
        Requirement(r)
        for r in pyproject["project"]["dependencies"]
        if Requirement(r).name == "croniter"
    ]
    assert any(spec.operator == "<" for spec in req.specifier), req
    assert version("croniter") in req.specifier
