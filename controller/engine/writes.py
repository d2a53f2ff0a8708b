"""The runner's writes of step state: buffered, so a step change is written at most
`STEP_WRITE_DELAY_SECONDS` late, together with the next ones or with the run's end.

Each write takes the database's one write lock: fifty runners starting at a minute boundary
each wrote a step's start, its end and the run's end apart, and mostly waited for the lock. A
step of a few milliseconds now costs one write with the run's end; a longer one shows as
running within the delay.

A database outage (`StoreUnavailable`) does not stop the run: the refused writes are kept in
order, in memory and in the run's local journal (`controller.runjournal`), and sent again,
all of them in one commit, with capped backoff and jitter (`controller.outage`) — from the
runner's select loop while steps run, and by `drain` at the run's end. The step processes go
on meanwhile. One line goes to the run log when the outage begins and one when it ends.

Called by the runner (`controller.engine.runner`); the runner's select timeout includes
`StepWriter.flush_at`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller import runjournal
from controller.engine.graph import Node, step_rows
from controller.outage import Outage
from controller.runjournal import StateWrite
from controller.store.records import StoreUnavailable
from controller.store.store import Store

if TYPE_CHECKING:
    from controller.secrets import SecretMasker

STEP_WRITE_DELAY_SECONDS = 0.1  # a step change is written at most this late (`flush`)


class StepWriter:
    """Buffers the step changes of one run and writes them in one commit; keeps the writes
    the database refused (`journal`: where they are kept on disk as well; `note`: one line
    for the run log at each end of an outage)."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        *,
        journal: Path | None = None,
        note: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._journal = journal
        self._note = note
        self._unsaved: dict[int, dict[str, Any]] = {}  # step row -> changes not yet written
        self._buffer_at: float | None = None  # monotonic deadline of the oldest of them
        self._pending: list[StateWrite] = []  # writes not in the database yet, oldest first
        self._journaled = 0  # how many of `_pending` are in the journal file already
        self._retry_at: float | None = None  # monotonic instant of the next attempt
        self.outage = Outage()
        self.last_refusal = ""  # the database's last refusal, for the give-up line
        self.masker: SecretMasker | None = None  # the DAG's `secrets:`; outputs are stored masked

    def record_nodes(self, nodes: Sequence[Node], step_ids: Sequence[int] | None) -> None:
        """Give each node its step row: `step_ids` when the claim wrote them, else new rows."""
        ids = step_ids
        if ids is None:
            ids = self._store.record_steps(self._run_id, step_rows(nodes))
        for node, row in zip(nodes, ids, strict=True):
            node.row = row

    def save(self, node: Node, **extra: Any) -> None:
        """Buffer the node's state (and `extra` fields of its row)."""
        self.buffer(
            node.row,
            status=node.status,
            exit_code=node.exit_code,
            retry_count=node.retry_count,
            done_count=node.done_count,
            started_at=node.started_at,
            finished_at=node.finished_at,
            retried_at=node.retried_at,
            stdout=node.stdout_path,
            stderr=node.stderr_path,
            error=self.mask(node.error),
            outputs=self._masked(node.outputs),
            children=node.children,
            **extra,
        )

    def mask(self, text: str) -> str:
        """`text` as stored: the DAG's secret values masked (an error may quote a command)."""
        return text if self.masker is None else self.masker.mask(text)

    def _masked(self, outputs: dict[str, str]) -> dict[str, str]:
        """`outputs` as stored: the DAG's secret values masked (the next steps still get the
        real values from the node, as in Dagu)."""
        masker = self.masker
        if masker is None or not outputs:
            return outputs
        return {k: masker.mask(v) for k, v in outputs.items()}

    @property
    def flush_at(self) -> float | None:
        """When `flush` is next due (monotonic): the oldest buffered change's deadline, or
        the next attempt of refused writes, whichever comes first."""
        due = [t for t in (self._buffer_at, self._retry_at) if t is not None]
        return min(due) if due else None

    def buffer(self, row: int, **fields: Any) -> None:
        """Buffer `fields` of step row `row`."""
        self._unsaved.setdefault(row, {}).update(fields)
        if self._buffer_at is None:
            self._buffer_at = time.monotonic() + STEP_WRITE_DELAY_SECONDS

    def flush(self, **run_fields: Any) -> bool:
        """Write the buffered step changes, and `run_fields` of the run, in one commit, after
        the writes refused before them. False when the database is unavailable, or while the
        backoff after a refusal runs: the writes are kept (memory and journal) and tried
        again at `flush_at`."""
        if self._unsaved or run_fields:
            self._pending.append((self._unsaved, run_fields))
        self._unsaved, self._buffer_at = {}, None
        if not self._pending:
            return True
        if self._retry_at is not None and time.monotonic() < self._retry_at:
            self._journal_pending()  # a step changed during the backoff: on disk at once
            return False
        try:
            self._store.record_run_writes(self._run_id, self._pending)
        except StoreUnavailable as exc:
            self._refused(exc)
            return False
        self._pending, self._retry_at = [], None
        if self._journaled and self._journal is not None:
            runjournal.remove(self._journal)
        self._journaled = 0
        length = self.outage.recovered(time.monotonic())
        if length is not None:
            self._say(f"database reachable again after {length:.1f} s; buffered writes saved")
        return True

    def drain(self, *, give_up_after_seconds: float) -> bool:
        """`flush`, retried with backoff until everything is written (True) or
        `give_up_after_seconds` passed (False: the journal keeps it, for the reaper)."""
        give_up_at = time.monotonic() + give_up_after_seconds
        while not self.flush():
            wait = (self._retry_at or 0.0) - time.monotonic()
            if time.monotonic() + max(0.0, wait) > give_up_at:
                return False
            time.sleep(max(0.0, wait))  # nothing else to do: the steps have all ended
        return True

    def _refused(self, exc: StoreUnavailable) -> None:
        """The database refused: journal what is not journaled yet, schedule the retry."""
        now = time.monotonic()
        self.last_refusal = str(exc)
        if self.outage.failed(now):
            self._say(f"state database unavailable; buffering writes and retrying: {exc}")
        self._retry_at = now + self.outage.next_delay_seconds()
        self._journal_pending()

    def _journal_pending(self) -> None:
        """Append the pending writes not in the journal yet (a killed runner loses none)."""
        if self._journal is None or self._journaled == len(self._pending):
            return
        try:
            runjournal.append(self._journal, self._pending[self._journaled :])
            self._journaled = len(self._pending)
        except OSError:
            pass  # a full log disk too: the writes are still in memory, retried all the same

    def _say(self, line: str) -> None:
        if self._note is not None:
            self._note(line)

    def flush_quietly(self) -> None:
        """`flush` when the run is already failing: the original error is the one to report."""
        try:
            self.flush()
        except Exception:
            pass
