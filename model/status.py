"""Run and step statuses with Dagu 1.30's names and numeric codes.

Code 5 means "queued" for a run but "skipped" for a step, as in Dagu; the two enums keep that apart.
Predicates live here so every rule about "active" or "successful" has one home.
"""

from __future__ import annotations

from enum import IntEnum


class RunStatus(IntEnum):
    """Status of a DAG run (Dagu `core.Status`)."""

    NOT_STARTED = 0
    RUNNING = 1
    FAILED = 2
    ABORTED = 3
    SUCCEEDED = 4
    QUEUED = 5
    PARTIALLY_SUCCEEDED = 6
    WAITING = 7
    REJECTED = 8

    @property
    def label(self) -> str:
        """Dagu's lower-case label, e.g. ``partially_succeeded``."""
        return self.name.lower()

    def is_active(self) -> bool:
        """Running, queued or waiting: the run still holds (or waits for) a slot."""
        return self in (RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.WAITING)

    def is_success(self) -> bool:
        """Succeeded or partially succeeded."""
        return self in (RunStatus.SUCCEEDED, RunStatus.PARTIALLY_SUCCEEDED)

    def is_final(self) -> bool:
        """The run has ended and its status will not change by itself."""
        return self in (
            RunStatus.FAILED,
            RunStatus.ABORTED,
            RunStatus.SUCCEEDED,
            RunStatus.PARTIALLY_SUCCEEDED,
            RunStatus.REJECTED,
        )

    @classmethod
    def from_label(cls, label: str) -> RunStatus:
        """Parse a label (``failed``) or a numeric code (``2``); raises ValueError."""
        if label.isdigit():
            return cls(int(label))
        return cls[label.upper()]


class StepStatus(IntEnum):
    """Status of one step (Dagu `core.NodeStatus`)."""

    NOT_STARTED = 0
    RUNNING = 1
    FAILED = 2
    ABORTED = 3
    SUCCEEDED = 4
    SKIPPED = 5
    PARTIALLY_SUCCEEDED = 6
    WAITING = 7
    REJECTED = 8

    @property
    def label(self) -> str:
        """Dagu's lower-case label, e.g. ``skipped``."""
        return self.name.lower()

    def is_active(self) -> bool:
        """Running or waiting."""
        return self in (StepStatus.RUNNING, StepStatus.WAITING)

    def is_success(self) -> bool:
        """Succeeded or partially succeeded (a skipped step is not a success)."""
        return self in (StepStatus.SUCCEEDED, StepStatus.PARTIALLY_SUCCEEDED)

    def is_done(self) -> bool:
        """The step will not run again in this attempt."""
        return self not in (StepStatus.NOT_STARTED, StepStatus.RUNNING, StepStatus.WAITING)
