"""Behaviour shared by the validated spec models and their cached light copies.

`model.spec` (pydantic) and `model.speccache` (plain classes read back from the spec cache
without importing pydantic) both describe the same DAG; the methods the engine calls on them
live here once, as mixins over the attributes both provide; so does `split_cron`, which the
schedule readers (`controller.schedule`) share with validation. Imports nothing heavy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Dagu's names of handler steps (the API's onSuccess/onFailure/onCancel/onExit fields).
HANDLER_STEP_NAMES = {
    "init": "onInit",
    "success": "onSuccess",
    "failure": "onFailure",
    "abort": "onCancel",
    "exit": "onExit",
    "wait": "onWait",
}

# Executor types this engine runs; the loader refuses Dagu's others (docker, ssh, archive, ...).
SUPPORTED_EXECUTORS = frozenset(
    {"", "command", "shell", "http", "jq", "mail", "dag", "subworkflow", "parallel"}
)

HANDLER_EVENTS = ("init", "success", "failure", "abort", "exit", "wait")


_CRON_TZ = re.compile(r"^(?:CRON_TZ|TZ)=(\S+)\s+(.*)$")


def split_cron(expression: str) -> tuple[str | None, str]:
    """Split ``CRON_TZ=Zone expr`` into (zone or None, expr)."""
    expr = expression.strip()
    m = _CRON_TZ.match(expr)
    if m:
        return m.group(1), m.group(2).strip()
    return None, expr


class StepBehaviour:
    """Derived facts of a step."""

    if TYPE_CHECKING:
        executor: Any
        call: str | None
        log_output: str | None

    @property
    def executor_type(self) -> str:
        """The executor type, "" for the default shell command executor."""
        if self.executor is not None and self.executor.type:
            return str(self.executor.type)
        if self.call is not None:
            return "dag"
        return ""

    def merges_logs(self, dag_log_output: str) -> bool:
        """Whether the step writes stdout and stderr into one `.log` file: its own
        `logOutput` if set, else the DAG's (`dag_log_output`), as Dagu 1.30.2 decides."""
        return (self.log_output or dag_log_output) == "merged"


class HandlerOnBehaviour:
    """The handlers that are set, in the order Dagu runs them."""

    def items(self) -> list[tuple[str, Any]]:
        """(event, step) for every handler that is set."""
        return [
            (event, step)
            for event in HANDLER_EVENTS
            if (step := getattr(self, event, None)) is not None
        ]


class DagBehaviour:
    """Derived facts of a loaded DAG (its spec plus where it came from)."""

    if TYPE_CHECKING:
        spec: Any
        name: str
        location: Path | None

    @property
    def file_name(self) -> str:
        """The DAG's file name without extension (Dagu's `fileName`)."""
        return self.location.stem if self.location is not None else self.name

    @property
    def queue(self) -> str:
        """The queue this DAG's runs wait in."""
        return str(self.spec.queue or self.name)

    def working_dir(self, default: Path | None = None) -> Path:
        """The DAG's working directory: `workingDir`, else `default`, else the file's dir."""
        base = self.location.parent if self.location is not None else Path.cwd()
        if self.spec.working_dir:
            wd = Path(self.spec.working_dir).expanduser()
            return wd if wd.is_absolute() else (base / wd)
        return default if default is not None else base

    def step(self, name: str) -> Any:
        """The step called `name` (or with id `name`); KeyError if none."""
        for step in self.spec.steps:
            if step.name == name or step.id == name:
                return step
        raise KeyError(name)
