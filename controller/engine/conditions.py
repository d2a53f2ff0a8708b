"""Conditions: a step's or the DAG's `preconditions` and a `repeatPolicy` condition.

A condition without `expected` is a command, met when it exits 0; with `expected`, its text
(backticks evaluated) is compared with it, or searched with a `re:` pattern. `negate` inverts.

Called by the runner (`controller.engine.runner`): before the DAG's steps, before a step, and
after each execution of a step that repeats on a condition.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from typing import Any

from controller.engine import expand as ex


def check_condition(
    cond: Any,
    *,
    scope: Mapping[str, str],
    env: Mapping[str, str],
    cwd: str,
    step_refs: Mapping[str, Mapping[str, str]],
) -> tuple[bool, str]:
    """(met, description) of `cond` (a ConditionSpec or a RepeatPolicySpec)."""
    # A value compared with `expected` is evaluated as Dagu does, an unknown reference
    # dropped; a command keeps it for its shell (which drops it too, or has the variable).
    compared = cond.expected is not None
    text = ex.expand(
        cond.condition, scope, step_refs=step_refs, fallback=env, keep_unknown=not compared
    )
    negate = bool(getattr(cond, "negate", False))
    if not compared:
        try:
            r = subprocess.run(
                ["sh", "-c", text],
                env=dict(env),
                cwd=cwd if os.path.isdir(cwd) else None,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
                start_new_session=True,
            )
            met = r.returncode == 0
        except OSError:
            met = False
    else:
        value = ex.eval_backticks(text, env=env, cwd=cwd if os.path.isdir(cwd) else None)
        expected = ex.expand(
            cond.expected, scope, step_refs=step_refs, fallback=env, keep_unknown=False
        )
        if expected.startswith("re:"):
            try:
                met = re.search(expected[3:], value) is not None
            except re.error:
                met = False
        else:
            met = value == expected
    if negate:
        met = not met
    return met, f"{cond.condition!r}"
