"""The UPDATE statements of runs and steps, built from column mappings: every column checked
against the schema's (`RUN_COLUMNS`, `STEP_COLUMNS`, a typo is a `ValueError` before anything
is sent) and every value encoded as stored (`run_value`, `step_value`). Pure: they return
(SQL, values) and execute nothing; each sets absolute values, so a runner's buffered write sent
twice changes nothing.

Also the one rule a run's final UPDATE carries: a run marked lost while its runner could not
reach the database (an outage), whose runner then reports its true end, keeps the lost mark as
a note (`LOST_NOTE_TAIL`).

Called by `controller.store.store` only (`update_run`, `update_steps`, `record_run_writes`,
`claim_queued_run`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controller.store.records import RUN_COLUMNS, STEP_COLUMNS, run_value, step_value
from model.status import RunStatus

# The end of the note kept on a run that was marked lost and whose runner reported in later.
LOST_NOTE_TAIL = " while its runner could not reach the database; the runner reported in later"


def run_assignments(fields: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
    """The `column=?` assignments of run columns `fields`, and their values as stored."""
    return _assignments(fields, RUN_COLUMNS, run_value, "run")


def run_update(run: int, fields: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """The UPDATE (SQL, values) setting columns `fields` of the run with row id `run`."""
    cols, values = run_assignments(fields)
    status = fields.get("status")
    if status is not None and RunStatus(status).is_final() and "notes" not in fields:
        # A run marked lost while its runner could not write (a database outage), whose
        # runner then reports its true end: the end is recorded, and the lost mark is
        # kept as a note (SET reads the row as it was before this UPDATE, in both
        # dialects; the second time the error no longer says lost, so nothing is added).
        cols.append(
            "notes = CASE WHEN status=? AND error LIKE 'lost:%' THEN notes || "
            "CASE WHEN notes='' THEN '' ELSE ? END || ? || error || ? ELSE notes END"
        )
        values += [int(RunStatus.FAILED), "\n", "marked ", LOST_NOTE_TAIL]
    return f"UPDATE runs SET {', '.join(cols)} WHERE id=?", [*values, run]


def step_updates(steps: Mapping[int, Mapping[str, Any]]) -> list[tuple[str, list[Any]]]:
    """One UPDATE (SQL, values) per step row of `steps` that has columns to set."""
    updates: list[tuple[str, list[Any]]] = []
    for step, fields in steps.items():
        cols, values = _assignments(fields, STEP_COLUMNS, step_value, "step")
        if cols:
            updates.append((f"UPDATE steps SET {', '.join(cols)} WHERE id=?", [*values, step]))
    return updates


def _assignments(
    fields: Mapping[str, Any],
    columns: Sequence[str],
    stored: Callable[[str, Any], Any],
    table: str,
) -> tuple[list[str], list[Any]]:
    cols: list[str] = []
    values: list[Any] = []
    for key, value in fields.items():
        if key not in columns:
            raise ValueError(f"unknown {table} column {key!r}")
        cols.append(f"{key}=?")
        values.append(stored(key, value))
    return cols, values
