"""The engine's rules as pure decisions: retry, repeat, continueOn, step readiness and the run
status, each a function of plain values returning a frozen decision. Inputs and decisions are
`NamedTuple`s rather than frozen dataclasses: every runner process defines them at start-up, and
a NamedTuple class costs a tenth of a dataclass to create.

Nothing here reads a file, the clock or a process: the runner (`controller.engine.runner`)
gathers the inputs (a step's log text where a `continueOn.output` pattern needs it, a repeat
condition's answer, the evaluated retry limit), calls the function, and acts on the decision
(mutates the node, records it, schedules the wait). Semantics are Dagu 1.30's (reference
dagu-1.30.md §4, §7.10-11); each rule is a table test in `tests/unit/test_engine_policies.py`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal, NamedTuple

from model.status import RunStatus, StepStatus

# ----------------------------------------------------------------------------- continueOn


class ContinueOnRule(NamedTuple):
    """A step's `continueOn`, as plain values."""

    failure: bool = False
    skipped: bool = False
    exit_codes: tuple[int, ...] = ()
    output_patterns: tuple[str, ...] = ()  # substrings, or `re:`/`regexp:` regular expressions
    mark_success: bool = False


class ContinueDecision(NamedTuple):
    """What a failed execution's `continueOn` allows."""

    tolerated: bool  # downstream steps run although the step failed (partial success)
    mark_success: bool  # the failed execution ends the step as succeeded
    reason: str


def output_matches(text: str, patterns: Sequence[str]) -> bool:
    """Whether a line of `text` contains a pattern (`re:`/`regexp:` ones are searched)."""
    lines = text.splitlines()
    for pattern in patterns:
        if pattern.startswith("re:") or pattern.startswith("regexp:"):
            rx = re.compile(pattern.split(":", 1)[1])
            if any(rx.search(line) for line in lines):
                return True
        elif any(pattern in line for line in lines):
            return True
    return False


def decide_continue(
    rule: ContinueOnRule, *, exit_code: int | None, stdout_text: str | None
) -> ContinueDecision:
    """`continueOn` for a failed execution that ended with `exit_code`.

    `stdout_text` is the step's stdout log, None when it has none or it cannot be read (no
    output pattern then matches). `markSuccess` marks succeeded only a failure the rule
    tolerates (Dagu's ShouldMarkSuccess is ShouldContinue and markSuccess): alone, without
    `failure`, an exit code or an output pattern, it marks nothing."""
    if rule.failure:
        matched, reason = True, "continueOn.failure"
    elif rule.exit_codes and exit_code in rule.exit_codes:
        matched, reason = True, f"exit code {exit_code} is in continueOn.exitCode"
    elif rule.output_patterns:
        matched = stdout_text is not None and output_matches(stdout_text, rule.output_patterns)
        reason = "the output matches continueOn.output" if matched else "no continueOn.output match"
    else:
        matched, reason = False, "no continueOn rule matches"
    return ContinueDecision(
        tolerated=matched, mark_success=rule.mark_success and matched, reason=reason
    )


# ----------------------------------------------------------------------------- readiness


class Upstream(NamedTuple):
    """A dependency of a step, as the step's readiness sees it."""

    status: StepStatus
    failure_tolerated: bool = False  # its continueOn lets a failure through (`decide_continue`)
    continue_on_skipped: bool = False


class Readiness(NamedTuple):
    """Whether a pending step starts now, waits, or is settled without running."""

    verdict: Literal["wait", "run", "settle"]
    status: StepStatus | None = None  # the status a settled step gets
    error: str = ""


SUCCEEDED_STATUSES = (StepStatus.SUCCEEDED, StepStatus.PARTIALLY_SUCCEEDED)


def decide_readiness(upstream: Iterable[Upstream]) -> Readiness:
    """A pending step's readiness from its dependencies, as Dagu 1.30.2's `isReady`: every
    dependency is looked at, in the order of `depends`; each one that ended neither
    succeeded nor tolerated settles the step (the last such one wins), even while another
    still runs (`depends_mixed_outcomes`). Without one, the step waits for those still
    running, else runs."""
    settled: Readiness | None = None
    waiting = False
    for dep in upstream:
        if dep.status in SUCCEEDED_STATUSES:
            continue
        if dep.status == StepStatus.FAILED:
            if not dep.failure_tolerated:
                settled = Readiness("settle", StepStatus.ABORTED, "upstream failed")
        elif dep.status == StepStatus.SKIPPED:
            if not dep.continue_on_skipped:
                settled = Readiness("settle", StepStatus.SKIPPED, "upstream skipped")
        elif dep.status == StepStatus.ABORTED:
            settled = Readiness("settle", StepStatus.ABORTED, "")  # Dagu: no error text here
        else:
            waiting = True
    if settled is not None:
        return settled
    return _WAIT if waiting else _RUN


# Shared: a pending step is asked about on every pass of the runner's loop.
_WAIT = Readiness("wait")
_RUN = Readiness("run")


# ----------------------------------------------------------------------------- retry, repeat


def backoff_seconds(
    interval_seconds: float, *, backoff: float | None, max_seconds: float | None, attempt: int
) -> float:
    """The wait before attempt `attempt + 1`: the interval times `backoff ** attempt`, capped
    at `max_seconds` (0 or None: no cap)."""
    if backoff:
        interval_seconds = interval_seconds * (backoff**attempt)
    if max_seconds:
        interval_seconds = min(interval_seconds, float(max_seconds))
    return interval_seconds


class RetryRule(NamedTuple):
    """A step's `retryPolicy`, its `limit` evaluated."""

    limit: int
    exit_codes: tuple[int, ...] = ()  # empty: every failure is retried
    backoff: float | None = None
    max_interval_seconds: float | None = None


class RetryDecision(NamedTuple):
    """Whether a failed execution is retried, and after how long."""

    retry: bool
    delay_seconds: float
    reason: str


def retry_refusal(rule: RetryRule, *, retry_count: int, exit_code: int, stopped: bool) -> str:
    """Why a failed execution is not retried; "" when it is."""
    if stopped:
        return "the run is stopping"
    if retry_count >= rule.limit:
        return f"retry limit {rule.limit} reached"
    if rule.exit_codes and exit_code not in rule.exit_codes:
        return f"exit code {exit_code} is not in retryPolicy.exitCode"
    return ""


def decide_retry(
    rule: RetryRule, *, retry_count: int, exit_code: int, stopped: bool, interval_seconds: float
) -> RetryDecision:
    """Retry a failed execution? `retry_count` retries were made already."""
    refusal = retry_refusal(rule, retry_count=retry_count, exit_code=exit_code, stopped=stopped)
    if refusal:
        return RetryDecision(False, 0.0, refusal)
    delay = backoff_seconds(
        interval_seconds,
        backoff=rule.backoff,
        max_seconds=rule.max_interval_seconds,
        attempt=retry_count,
    )
    return RetryDecision(True, delay, f"retry {retry_count + 1} of {rule.limit}")


class RepeatRule(NamedTuple):
    """A step's `repeatPolicy`, as plain values."""

    mode: Literal["while", "until"]
    limit: int = 0  # executions in all; 0: no limit
    has_condition: bool = False  # a `condition` decides (its answer is an input)
    exit_codes: tuple[int, ...] = ()  # else these exit codes decide; else success does
    interval_seconds: float = 0.0
    backoff: float | None = None
    max_interval_seconds: float | None = None


class RepeatDecision(NamedTuple):
    """Whether an ended execution is repeated, and after how long."""

    repeat: bool
    delay_seconds: float
    reason: str


def repeat_refusal(rule: RepeatRule, *, done_count: int, stopped: bool) -> str:
    """Why no execution follows, whatever the last one did; "" when its outcome decides (the
    runner evaluates a repeat condition only then)."""
    if stopped:
        return "the run is stopping"
    if rule.limit and done_count >= rule.limit:
        return f"repeat limit {rule.limit} reached"
    return ""


def decide_repeat(
    rule: RepeatRule,
    *,
    done_count: int,
    repeat_n: int,
    exit_code: int,
    stopped: bool,
    condition_met: bool | None = None,
) -> RepeatDecision:
    """Repeat an execution that ended with `exit_code`? `done_count` executions ended so far
    (this one included), `repeat_n` repetitions were scheduled; `condition_met` is the answer
    of the policy's condition (required when it has one)."""
    refusal = repeat_refusal(rule, done_count=done_count, stopped=stopped)
    if refusal:
        return RepeatDecision(False, 0.0, refusal)
    if rule.has_condition:
        if condition_met is None:
            raise ValueError("a repeat condition must be evaluated before the decision")
        match, what = condition_met, "the condition is met"
    elif rule.exit_codes:
        match, what = exit_code in rule.exit_codes, f"exit code {exit_code} is listed"
    else:
        match, what = exit_code == 0, "the execution succeeded"
    again = match if rule.mode == "while" else not match
    reason = f"{rule.mode}: {what}" if match else f"{rule.mode}: not ({what})"
    if not again:
        return RepeatDecision(False, 0.0, reason)
    delay = backoff_seconds(
        rule.interval_seconds,
        backoff=rule.backoff,
        max_seconds=rule.max_interval_seconds,
        attempt=repeat_n,
    )
    return RepeatDecision(True, delay, reason)


# ----------------------------------------------------------------------------- run status


class StepOutcome(NamedTuple):
    """A main step's final state, as the run status sees it."""

    status: StepStatus
    failure_tolerated: bool = False  # a failure its continueOn lets through


class RunStatusDecision(NamedTuple):
    """The run's status and why."""

    status: RunStatus
    reason: str


def derive_run_status(
    steps: Sequence[StepOutcome], *, canceled: bool, failed: bool
) -> RunStatusDecision:
    """Dagu's run status (reference §4.1) from the main steps' final states. `failed`: a step
    failure (or a run error) was recorded that nothing tolerated."""
    statuses = [s.status for s in steps]
    if canceled and not all(s in (StepStatus.SUCCEEDED, StepStatus.SKIPPED) for s in statuses):
        return RunStatusDecision(RunStatus.ABORTED, "stopped before every step succeeded")
    if any(s == StepStatus.RUNNING for s in statuses):
        return RunStatusDecision(RunStatus.RUNNING, "a step is running")
    succeeded = any(s.is_success() for s in statuses)
    failures = [s for s in steps if s.status == StepStatus.FAILED]
    # a partially succeeded step (a sub-DAG that was) counts as a tolerated failure (Dagu)
    partial = StepStatus.PARTIALLY_SUCCEEDED in statuses
    if succeeded and (failures or partial) and all(s.failure_tolerated for s in failures):
        return RunStatusDecision(
            RunStatus.PARTIALLY_SUCCEEDED,
            "every failure is tolerated by continueOn" if failures else "a step partly succeeded",
        )
    if failed:
        return RunStatusDecision(RunStatus.FAILED, "a step failed")
    return RunStatusDecision(RunStatus.SUCCEEDED, "no failure")
