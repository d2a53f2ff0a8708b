"""Starting the runner process of a QUEUED run: the one way the controller and the workers do it.

A runner is forked warm by the fork-server when there is one (`controller.spawn.client`), else
spawned as `python -m controller start -q --run-id ID [-c CONFIG] FILE`; either way it is
detached in its own session (killing its starter, even with SIGKILL, leaves it running),
with stdin and stdout on /dev/null and stderr appended to the run's `runner.err`
(`controller.runlogs`), in the environment `runner_env` pins.

Callers: `controller.loop.apply` (the applier's launches and prepared runners),
`controller.loop.controller` and `controller.cluster.worker` (their fork-server's environment,
the workers' launches).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Mapping

from controller import runlogs
from controller.spawn.client import Dispatch, ForkServer, ForkServerUnavailable
from controller.spawn.protocol import start_argv
from controller.store.records import RunRecord
from model.config import Settings

__all__ = ["runner_env", "start_runner"]

log = logging.getLogger("dagloop.controller")


def runner_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a spawned runner: ours, with the paths this controller uses pinned."""
    env = dict(os.environ if base is None else base)
    env["DAGU_HOME"] = str(settings.home)
    env["DAGU_DAGS_DIR"] = str(settings.dags_dir)
    env["DAGU_DATA_DIR"] = str(settings.data_dir)
    env["DAGU_LOG_DIR"] = str(settings.log_dir)
    env["DAGU_BASE_CONFIG"] = str(settings.base_config)
    return env


def start_runner(
    settings: Settings, forkserver: ForkServer | None, run: RunRecord, *, flush: bool = True
) -> subprocess.Popen[bytes] | Dispatch:
    """Start the runner of the queued `run`: forked warm by `forkserver` when there is one
    (~10 ms of CPU instead of a whole interpreter start), else spawned. Detached in its own
    session either way, so the run outlives whoever started it. `flush=False` leaves a
    fork-server request in its pipe until `ForkServer.flush` (the applier sends a pass's
    launches together)."""
    log_dir = runlogs.run_dir(settings.log_dir, run.dag_name, run.run_id)
    config = settings.config_file
    args = start_argv(run.run_id, run.file, None if config is None else str(config))
    if forkserver is not None:
        try:
            # The child makes the log directory: the caller's loop only writes one line.
            return forkserver.launch(
                row=run.id,
                argv=args,
                err_path=str(log_dir / runlogs.RUNNER_ERR),
                env=runner_env(settings),
                cwd=os.getcwd(),
                flush=flush,
            )
        except ForkServerUnavailable as exc:
            log.warning("fork-server unavailable; spawning the runner", extra={"error": str(exc)})
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / runlogs.RUNNER_ERR, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "controller", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=runner_env(settings),
            start_new_session=True,
            close_fds=True,
        )
