"""The UPDATE statements built from column mappings (`controller.store.updates`): pure values,
checked here without a database; `test_store.py` runs them."""

from __future__ import annotations

import pytest

from controller.store.updates import LOST_NOTE_TAIL, run_update, step_updates
from model.status import RunStatus, StepStatus


def test_run_update_encodes_values_and_targets_the_row() -> None:
    sql, values = run_update(7, {"params": ("A=1",), "status": RunStatus.RUNNING})
    assert sql == "UPDATE runs SET params=?, status=? WHERE id=?"
    assert values == ['["A=1"]', int(RunStatus.RUNNING), 7]


def test_final_status_keeps_a_lost_mark_as_a_note_unless_notes_are_set() -> None:
    sql, values = run_update(7, {"status": RunStatus.SUCCEEDED})
    assert "notes = CASE" in sql and LOST_NOTE_TAIL in values and values[-1] == 7
    sql, _ = run_update(7, {"status": RunStatus.SUCCEEDED, "notes": "kept"})
    assert "CASE" not in sql


def test_step_updates_skip_empty_rows_and_refuse_unknown_columns() -> None:
    assert step_updates({1: {}, 2: {"status": StepStatus.FAILED}}) == [
        ("UPDATE steps SET status=? WHERE id=?", [int(StepStatus.FAILED), 2])
    ]
    with pytest.raises(ValueError, match="unknown step column"):
        step_updates({1: {"nope": 1}})
    with pytest.raises(ValueError, match="unknown run column"):
        run_update(1, {"nope": 1})
