"""The runner's writes of step state: buffered, so a step change is written at most
`STEP_WRITE_DELAY_SECONDS` late, together with the next ones or with the run's end.

Each write takes the database's one write lock: fifty runners starting at a minute boundary
each wrote a step's start, its end and the run's end apart, and mostly waited for the lock. A
step of a few milliseconds now costs one write with the run's end; a longer one shows as
running within the delay.

Called by the runner (`controller.engine.runner`); the runner's select timeout includes
`StepWriter.flush_at`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from controller.engine.graph import Node, step_rows
from controller.store.store import Store

if TYPE_CHECKING:
    from controller.secrets import SecretMasker

STEP_WRITE_DELAY_SECONDS = 0.1  # a step change is written at most this late (`flush`)


class StepWriter:
    """Buffers the step changes of one run and writes them in one commit."""

    def __init__(self, store: Store, run_id: int) -> None:
        self._store = store
        self._run_id = run_id
        self._unsaved: dict[int, dict[str, Any]] = {}  # step row -> changes not yet written
        self.flush_at: float | None = None  # monotonic deadline of the oldest of them
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

    def buffer(self, row: int, **fields: Any) -> None:
        """Buffer `fields` of step row `row`."""
        self._unsaved.setdefault(row, {}).update(fields)
        if self.flush_at is None:
            self.flush_at = time.monotonic() + STEP_WRITE_DELAY_SECONDS

    def flush(self, **run_fields: Any) -> None:
        """Write the buffered step changes, and `run_fields` of the run, in one commit."""
        steps, self._unsaved, self.flush_at = self._unsaved, {}, None
        self._store.update_steps(
            steps, run=self._run_id if run_fields else None, run_fields=run_fields
        )

    def flush_quietly(self) -> None:
        """`flush` when the run is already failing: the original error is the one to report."""
        try:
            self.flush()
        except Exception:
            pass
