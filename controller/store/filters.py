"""Which runs a runs listing holds: `RunFilter`, the filters of `Store.list_runs` and
`Store.count_runs` as one value, and the one WHERE clause both send, so a page and the count
of its pages can never disagree.

A plain frozen dataclass, no I/O. Built by the API's query parsing (`api.runs`), the `stop`
verb and the tests; read by `controller.store.store` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from model.status import RunStatus


@dataclass(frozen=True)
class RunFilter:
    """Runs that match every field given; a field left at its default does not filter."""

    dag_name: str | None = None  # exactly this DAG
    statuses: tuple[RunStatus, ...] = ()  # in one of these statuses
    since: float | None = None  # created at or after (epoch seconds)
    until: float | None = None  # created at or before (epoch seconds)
    run_id: str | None = None  # exactly this run id ("" does not filter)
    name_contains: str | None = None  # DAG name holding this text ("" does not filter)

    def sql(self) -> tuple[str, list[Any]]:
        """The WHERE clause over the `runs` table (with its leading space, or "") and its
        arguments."""
        where: list[str] = []
        args: list[Any] = []
        if self.dag_name is not None:
            where.append("dag_name=?")
            args.append(self.dag_name)
        if self.name_contains:
            where.append("instr(dag_name, ?) > 0")
            args.append(self.name_contains)
        if self.statuses:
            where.append(f"status IN ({','.join('?' * len(self.statuses))})")
            args.extend(int(s) for s in self.statuses)
        if self.since is not None:
            where.append("created_at >= ?")
            args.append(self.since)
        if self.until is not None:
            where.append("created_at <= ?")
            args.append(self.until)
        if self.run_id:
            where.append("run_id=?")
            args.append(self.run_id)
        return (" WHERE " + " AND ".join(where) if where else ""), args


ALL_RUNS = RunFilter()  # no filter: every run
