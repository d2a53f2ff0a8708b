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

# Executor types this engine runs itself; everything else is "not supported by this engine".
SUPPORTED_EXECUTORS = frozenset({"", "command", "shell", "http", "mail", "dag", "subworkflow"})

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
        container: Any
        llm: Any
        messages: Any
        shell: list[str] | None

    @property
    def executor_type(self) -> str:
        """The executor type, "" for the default shell command executor."""
        if self.executor is not None and self.executor.type:
            return str(self.executor.type)
        if self.call is not None:
            return "dag"
        return ""

    def unsupported_features(self) -> list[str]:
        """Names of features this step needs that this engine does not run."""
        out = []
        if self.executor_type not in SUPPORTED_EXECUTORS:
            out.append(f"executor type {self.executor_type!r}")
        if self.container is not None:
            out.append("container")
        if self.llm is not None or self.messages is not None:
            out.append("llm")
        if self.shell and self.shell[0].endswith("nix-shell"):
            out.append("nix-shell")
        return out


class HandlerOnBehaviour:
    """The handlers that are set, in the order Dagu runs them."""

    def items(self) -> list[tuple[str, Any]]:
        """(event, step) for every handler that is set."""
        return [
            (event, step)
            for event in HANDLER_EVENTS
            if (step := getattr(self, event, None)) is not None
        ]


class DagSpecBehaviour:
    """Derived facts of a DAG document."""

    if TYPE_CHECKING:
        container: Any
        ssh: Any
        otel: Any
        secrets: Any

    def unsupported_features(self) -> list[str]:
        """DAG-level features this engine does not run."""
        out = []
        if self.container is not None:
            out.append("container")
        if self.ssh is not None:
            out.append("ssh")
        if self.otel is not None:
            out.append("otel")
        if self.secrets:
            providers = {str(s.get("provider", "")) for s in self.secrets}
            if providers - {"env", "file"}:
                out.append("secrets provider " + ", ".join(sorted(providers - {"env", "file"})))
        return out


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
