"""Side-by-side compatibility of `dagloop start` with Dagu 1.30.2 over the DAG corpus.

Each DAG of `tests/compat/dags/` runs with dagloop as a real subprocess
(`python -m controller start --json FILE`) in its own DAGU_HOME, and its normalised result
(run status, `start` exit code, step statuses, handler statuses, outputs, retry/repeat counts;
see `harness.py`) must equal:

* the result recorded from the real Dagu 1.30.2 binary in `golden/<case>.json`
  (always runs, so CI checks compatibility without the binary), and
* the result of the live Dagu binary run side by side (`-m peer`, by hand: the default run
  deselects it; skipped with a reason when the binary is absent).

Deliberate differences are not hidden: `ALLOWANCES` below replaces Dagu's value by the value
dagloop must produce, with the reason; each one is written up in `docs/compatibility.md`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.compat.harness import (
    Case,
    Outcome,
    compare,
    find_peer,
    golden_path,
    last_json_document,
    load_cases,
    run_dagloop,
    run_peer,
)

CASES = load_cases()

# case -> {field: (value dagloop must produce instead of Dagu's, reason)}.
# A field is a top-level key ("exit_code", "status") or "<section>.<name>" for nodes,
# handlers and outputs; "unordered_nodes" turns the definition-order check off.
ALLOWANCES: dict[str, dict[str, tuple[Any, str]]] = {
    # docs/compatibility.md "Exit code of `start`": Dagu exits 0 for a run aborted by a signal or
    # stop; dagloop exits 0 only for succeeded runs and DAG-precondition skips.
    "handlers_abort": {
        "exit_code": (1, "start exits 1 for a run aborted by a stop/signal (Dagu: 0)"),
    },
    "handlers_cancel_alias": {
        "exit_code": (1, "start exits 1 for a run aborted by a stop/signal (Dagu: 0)"),
    },
    # The same section: a partially succeeded run exits 1 whatever made it partial; Dagu exits 0
    # when only a sub-DAG partly succeeded (no error recorded) and 1 for a tolerated failure.
    "call_partial_child": {
        "exit_code": (1, "start exits 1 for a partially succeeded run (Dagu: 0 via a sub-DAG)"),
    },
    "call_parallel_partial_child": {
        "exit_code": (1, "start exits 1 for a partially succeeded run (Dagu: 0 via a sub-DAG)"),
    },
    # docs/compatibility.md "Step environment": the seed's whitelist (PATH HOME LANG TZ SHELL,
    # prefixes DAGU_ DAG_ LC_) minus the controller's credentials. Dagu passes USER and leaks
    # DAGU_AUTH_* into every step.
    "env_filtering_secrets": {
        "outputs.visible": (
            "DAGU_AUTH_TOKEN=unset DAGU_AUTH_BASIC_PASSWORD=unset USER=unset",
            "controller credentials and non-seed variables are not passed to steps",
        ),
    },
    # docs/compatibility.md "Handlers after a DAG timeout": Dagu starts the failure and exit
    # handlers under the expired run deadline, so they fail at once without running their
    # command; dagloop runs them (without the expired deadline) and they succeed.
    "dag_timeout": {
        "handlers.onFailure": ("succeeded", "handlers run after the DAG deadline (Dagu: failed)"),
        "handlers.onExit": ("succeeded", "handlers run after the DAG deadline (Dagu: failed)"),
    },
    # docs/compatibility.md "Stop while a step waits for a retry" and "Exit code of `start`".
    "stop_waiting_steps": {
        "nodes.retry_wait": ("aborted", "a retry pending at a stop is aborted (Dagu: succeeded)"),
        "exit_code": (1, "start exits 1 for a run aborted by a stop/signal (Dagu: 0)"),
    },
    # docs/compatibility.md "A failing command substitution in the DAG's env or params": Dagu
    # refuses to start (exit 1, no run recorded); dagloop records the run failed before any
    # step, with the command in its error, so the failure is visible in the history and API.
    "env_backtick_fails": {
        "status": ("failed", "recorded as a failed run (Dagu: no run)"),
        "nodes.never": ("not_started", "no step starts"),
    },
    # Not a difference: Dagu keeps map-form steps in Go map order (random per run), so only the
    # statuses are comparable here; dagloop keeps the file order.
    "steps_map_form": {
        "unordered_nodes": (True, "Dagu orders map-form steps randomly"),
    },
    # invalid_cycle: Dagu 1.30.2 panics (exit 2) on a dependency cycle; dagloop must refuse the
    # file with a validation error. `compare` only checks "refused with a non-zero exit" for
    # refused DAGs, so no allowance is needed (docs/compatibility.md "Dependency cycles").
}

# dagloop records step exit codes (Dagu loses them: docs/compatibility.md "Step exit codes").
# (case, step) -> the exitCode dagloop's run details must report.
EXPECTED_EXIT_CODES: dict[tuple[str, str], int] = {
    ("chain_basic", "first"): 0,
    ("exit_failed", "fails"): 6,
    ("continue_on_exitcode", "code4"): 4,
    ("missing_binary", "via_shell"): 127,
    ("step_timeout_fail", "slow"): 124,
    ("outputs_step_refs", "noisy"): 3,
    ("script_interpreter", "failing_script"): 9,
}

PEER_MISSING = (
    "Dagu 1.30.2 binary not found: set DAGU_PEER_BIN or "
    "`npm install @dagu-org/dagu-linux-x64@1.30.2` into /tmp/dagu"
)


def expected_for(case_name: str, dagu_result: dict[str, Any]) -> dict[str, Any]:
    """Dagu's normalised result with this case's allowances applied."""
    expected = copy.deepcopy(dagu_result)
    for key, (value, _reason) in ALLOWANCES.get(case_name, {}).items():
        section, dot, name = key.partition(".")
        if dot:
            expected.setdefault(section, {})[name] = value
        else:
            expected[key] = value
    return expected


def explain(case: Case, diffs: list[str], outcome: Outcome) -> str:
    """A failure message with every difference and the tail of dagloop's output."""
    return (
        f"dagloop differs from Dagu on {case.path.name}:\n  "
        + "\n  ".join(diffs)
        + f"\n--- dagloop stderr (tail) ---\n{outcome.stderr[-2000:]}"
    )


def test_every_case_has_a_golden_file() -> None:
    """A DAG added to the corpus without recording Dagu's result fails here, and vice versa."""
    cases = {c.name for c in CASES}
    goldens = {p.stem for p in golden_path(CASES[0]).parent.glob("*.json")}
    assert len(cases) >= 40
    assert cases - goldens == set(), "run tests/compat/record_golden.py for these"
    assert goldens - cases == set(), "golden files without a DAG"


def test_allowances_name_existing_cases() -> None:
    """An allowance for a renamed or deleted case would silently stop meaning anything."""
    names = {c.name for c in CASES}
    assert set(ALLOWANCES) <= names
    assert {case for case, _ in EXPECTED_EXIT_CODES} <= names


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_dagloop_matches_recorded_dagu(case: Case, tmp_path: Path) -> None:
    """dagloop's result equals Dagu 1.30.2's recorded one (modulo the allowances)."""
    golden = json.loads(golden_path(case).read_text())
    outcome = run_dagloop(case, tmp_path)
    diffs = compare(expected_for(case.name, golden), outcome.normalised)
    assert not diffs, explain(case, diffs, outcome)


@pytest.mark.peer
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_dagloop_matches_live_dagu(case: Case, tmp_path: Path) -> None:
    """Both engines run the same DAG now, on this machine; the results must agree."""
    peer = find_peer()
    if peer is None:
        pytest.skip(PEER_MISSING)
    dagu = run_peer(peer, case, tmp_path / "dagu")
    outcome = run_dagloop(case, tmp_path / "dagloop")
    diffs = compare(expected_for(case.name, dagu.normalised), outcome.normalised)
    assert not diffs, explain(case, diffs, outcome)


@pytest.mark.parametrize(
    ("case_name", "step", "code"),
    [(c, s, code) for (c, s), code in EXPECTED_EXIT_CODES.items()],
    ids=[f"{c}-{s}" for c, s in EXPECTED_EXIT_CODES],
)
def test_step_exit_codes_are_recorded(case_name: str, step: str, code: int, tmp_path: Path) -> None:
    """Unlike Dagu, dagloop reports each step's exit code in the run details."""
    case = next(c for c in CASES if c.name == case_name)
    outcome = run_dagloop(case, tmp_path)
    document = last_json_document(outcome.stdout) or {}
    nodes = {n["step"]["name"]: n for n in document.get("nodes", [])}
    assert step in nodes, f"no node {step!r} in dagloop's run details"
    assert nodes[step].get("exitCode") == code
