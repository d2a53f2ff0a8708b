"""The engine's decisions as tables: plain inputs in, a frozen decision out
(`controller.engine.policies`)."""

from __future__ import annotations

import pytest

from controller.engine.policies import (
    ContinueDecision,
    ContinueOnRule,
    Readiness,
    RepeatDecision,
    RepeatRule,
    RetryDecision,
    RetryRule,
    StepOutcome,
    Upstream,
    backoff_seconds,
    decide_continue,
    decide_readiness,
    decide_repeat,
    decide_retry,
    derive_run_status,
    output_matches,
    repeat_refusal,
    retry_refusal,
)
from model.status import RunStatus, StepStatus

S = StepStatus

# ----------------------------------------------------------------------------- retry

RETRY_CASES = [
    # (rule, retry_count, exit_code, stopped, interval) -> decision
    (RetryRule(limit=2), 0, 1, False, 0.0, RetryDecision(True, 0.0, "retry 1 of 2")),
    (RetryRule(limit=2), 1, 1, False, 5.0, RetryDecision(True, 5.0, "retry 2 of 2")),
    (RetryRule(limit=2), 2, 1, False, 5.0, RetryDecision(False, 0.0, "retry limit 2 reached")),
    (RetryRule(limit=0), 0, 1, False, 5.0, RetryDecision(False, 0.0, "retry limit 0 reached")),
    (RetryRule(limit=3), 0, 1, True, 5.0, RetryDecision(False, 0.0, "the run is stopping")),
    (
        RetryRule(limit=3, exit_codes=(2, 3)),
        0,
        1,
        False,
        5.0,
        RetryDecision(False, 0.0, "exit code 1 is not in retryPolicy.exitCode"),
    ),
    (
        RetryRule(limit=3, exit_codes=(2, 3)),
        0,
        3,
        False,
        5.0,
        RetryDecision(True, 5.0, "retry 1 of 3"),
    ),
    # backoff: interval * backoff ** retries made
    (RetryRule(limit=5, backoff=2.0), 0, 1, False, 1.0, RetryDecision(True, 1.0, "retry 1 of 5")),
    (RetryRule(limit=5, backoff=2.0), 3, 1, False, 1.0, RetryDecision(True, 8.0, "retry 4 of 5")),
    # capped by maxIntervalSec
    (
        RetryRule(limit=5, backoff=2.0, max_interval_seconds=5),
        3,
        1,
        False,
        1.0,
        RetryDecision(True, 5.0, "retry 4 of 5"),
    ),
    # maxIntervalSec 0: no cap
    (
        RetryRule(limit=5, backoff=3.0, max_interval_seconds=0),
        2,
        1,
        False,
        1.0,
        RetryDecision(True, 9.0, "retry 3 of 5"),
    ),
]


@pytest.mark.parametrize(
    ("rule", "retry_count", "exit_code", "stopped", "interval", "expected"), RETRY_CASES
)
def test_retry_decision(
    rule: RetryRule,
    retry_count: int,
    exit_code: int,
    stopped: bool,
    interval: float,
    expected: RetryDecision,
) -> None:
    decision = decide_retry(
        rule,
        retry_count=retry_count,
        exit_code=exit_code,
        stopped=stopped,
        interval_seconds=interval,
    )
    assert decision == expected
    refusal = retry_refusal(rule, retry_count=retry_count, exit_code=exit_code, stopped=stopped)
    assert (refusal == "") == expected.retry


def test_decisions_are_frozen() -> None:
    decision = decide_retry(
        RetryRule(limit=1), retry_count=0, exit_code=1, stopped=False, interval_seconds=0
    )
    with pytest.raises(AttributeError):  # immutable: the runner cannot alter a decision
        decision.retry = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("interval", "backoff", "cap", "attempt", "expected"),
    [
        (2.0, None, None, 5, 2.0),
        (2.0, 2.0, None, 0, 2.0),
        (2.0, 2.0, None, 2, 8.0),
        (2.0, 2.0, 7, 2, 7.0),
        (2.0, 1.5, 0, 2, 4.5),
        (0.0, 2.0, 10, 4, 0.0),
    ],
)
def test_backoff_seconds(
    interval: float, backoff: float | None, cap: float | None, attempt: int, expected: float
) -> None:
    assert backoff_seconds(interval, backoff=backoff, max_seconds=cap, attempt=attempt) == expected


# ----------------------------------------------------------------------------- repeat

WHILE_OK = RepeatRule(mode="while")  # legacy `repeat: true`: repeat while the step succeeds
UNTIL_COND = RepeatRule(mode="until", has_condition=True, interval_seconds=1.0)
WHILE_COND = RepeatRule(mode="while", has_condition=True)
UNTIL_CODES = RepeatRule(mode="until", exit_codes=(0,), limit=3)
WHILE_CODES = RepeatRule(mode="while", exit_codes=(1, 2))

REPEAT_CASES = [
    # (rule, done_count, repeat_n, exit_code, stopped, condition_met) -> (repeat, delay)
    (WHILE_OK, 1, 0, 0, False, None, True, 0.0),
    (WHILE_OK, 1, 0, 1, False, None, False, 0.0),  # a failure ends a plain `while`
    (WHILE_OK, 1, 0, 0, True, None, False, 0.0),  # a stopping run repeats nothing
    (UNTIL_COND, 1, 0, 0, False, False, True, 1.0),  # until: not met yet -> again
    (UNTIL_COND, 2, 1, 0, False, True, False, 0.0),  # until: met -> done
    (UNTIL_COND, 2, 1, 1, False, False, True, 1.0),  # the exit code does not matter
    (WHILE_COND, 1, 0, 0, False, True, True, 0.0),
    (WHILE_COND, 1, 0, 0, False, False, False, 0.0),
    (UNTIL_CODES, 1, 0, 1, False, None, True, 0.0),  # until exit 0: exit 1 -> again
    (UNTIL_CODES, 2, 1, 0, False, None, False, 0.0),
    (UNTIL_CODES, 3, 2, 1, False, None, False, 0.0),  # limit 3 executions reached
    (WHILE_CODES, 1, 0, 2, False, None, True, 0.0),
    (WHILE_CODES, 1, 0, 0, False, None, False, 0.0),
    # the wait grows with each repetition and stops at the cap
    (
        RepeatRule(mode="while", interval_seconds=1.0, backoff=2.0, max_interval_seconds=3),
        3,
        2,
        0,
        False,
        None,
        True,
        3.0,
    ),
    (RepeatRule(mode="while", interval_seconds=1.0, backoff=2.0), 2, 1, 0, False, None, True, 2.0),
]


@pytest.mark.parametrize(
    ("rule", "done_count", "repeat_n", "exit_code", "stopped", "met", "repeat", "delay"),
    REPEAT_CASES,
)
def test_repeat_decision(
    rule: RepeatRule,
    done_count: int,
    repeat_n: int,
    exit_code: int,
    stopped: bool,
    met: bool | None,
    repeat: bool,
    delay: float,
) -> None:
    decision = decide_repeat(
        rule,
        done_count=done_count,
        repeat_n=repeat_n,
        exit_code=exit_code,
        stopped=stopped,
        condition_met=met,
    )
    assert (decision.repeat, decision.delay_seconds) == (repeat, delay)
    assert decision.reason


@pytest.mark.parametrize(
    ("rule", "done_count", "stopped", "expected"),
    [
        (UNTIL_CODES, 3, False, "repeat limit 3 reached"),
        (UNTIL_CODES, 2, False, ""),
        (WHILE_OK, 100, False, ""),  # limit 0: no limit
        (WHILE_OK, 1, True, "the run is stopping"),
    ],
)
def test_repeat_refusal_needs_no_outcome(
    rule: RepeatRule, done_count: int, stopped: bool, expected: str
) -> None:
    assert repeat_refusal(rule, done_count=done_count, stopped=stopped) == expected


def test_repeat_condition_refused_before_it_is_needed() -> None:
    # the limit decides first: the condition (a command) need not run
    decision = decide_repeat(
        RepeatRule(mode="until", has_condition=True, limit=2),
        done_count=2,
        repeat_n=1,
        exit_code=0,
        stopped=False,
    )
    assert decision == RepeatDecision(False, 0.0, "repeat limit 2 reached")
    with pytest.raises(ValueError):
        decide_repeat(UNTIL_COND, done_count=1, repeat_n=0, exit_code=0, stopped=False)


# ----------------------------------------------------------------------------- continueOn

LOG = "starting\nWARN: disk almost full\nexit 3\n"

CONTINUE_CASES = [
    # (rule, exit_code, stdout_text) -> (tolerated, mark_success)
    (ContinueOnRule(), 1, LOG, False, False),
    (ContinueOnRule(failure=True), 1, None, True, False),
    (ContinueOnRule(skipped=True), 1, None, False, False),  # skipped says nothing of failures
    (ContinueOnRule(exit_codes=(3,)), 3, None, True, False),
    (ContinueOnRule(exit_codes=(3,)), 1, None, False, False),
    (ContinueOnRule(output_patterns=("WARN",)), 1, LOG, True, False),
    (ContinueOnRule(output_patterns=("ERROR",)), 1, LOG, False, False),
    (ContinueOnRule(output_patterns=("re:^exit [0-9]$",)), 1, LOG, True, False),
    (ContinueOnRule(output_patterns=("regexp:disk .* full",)), 1, LOG, True, False),
    (ContinueOnRule(output_patterns=("WARN",)), 1, None, False, False),  # no readable log
    (ContinueOnRule(exit_codes=(2,), output_patterns=("WARN",)), 1, LOG, True, False),
    # markSuccess marks only a failure the rule tolerates: alone it marks nothing
    (ContinueOnRule(mark_success=True), 1, None, False, False),
    (ContinueOnRule(mark_success=True, failure=True), 1, None, True, True),
    # with a filter, only a failure it matches
    (ContinueOnRule(mark_success=True, exit_codes=(3,)), 3, None, True, True),
    (ContinueOnRule(mark_success=True, exit_codes=(3,)), 4, None, False, False),
    (ContinueOnRule(mark_success=True, output_patterns=("WARN",)), 1, LOG, True, True),
    (ContinueOnRule(mark_success=True, output_patterns=("nope",)), 1, LOG, False, False),
]


@pytest.mark.parametrize(("rule", "exit_code", "text", "tolerated", "mark"), CONTINUE_CASES)
def test_continue_on_decision(
    rule: ContinueOnRule, exit_code: int, text: str | None, tolerated: bool, mark: bool
) -> None:
    decision = decide_continue(rule, exit_code=exit_code, stdout_text=text)
    assert isinstance(decision, ContinueDecision)
    assert (decision.tolerated, decision.mark_success) == (tolerated, mark)
    assert decision.reason


@pytest.mark.parametrize(
    ("text", "patterns", "expected"),
    [
        ("a\nb", ["b"], True),
        ("a\nb", ["a\nb"], False),  # a pattern is matched within one line
        ("", ["x"], False),
        ("x", [], False),
        ("value=42", ["re:=\\d+$"], True),
    ],
)
def test_output_matches(text: str, patterns: list[str], expected: bool) -> None:
    assert output_matches(text, patterns) is expected


# ----------------------------------------------------------------------------- readiness

OK = Upstream(S.SUCCEEDED)
PARTIAL = Upstream(S.PARTIALLY_SUCCEEDED)
FAILED = Upstream(S.FAILED)
FAILED_TOLERATED = Upstream(S.FAILED, failure_tolerated=True)
SKIPPED = Upstream(S.SKIPPED)
SKIPPED_CONTINUE = Upstream(S.SKIPPED, continue_on_skipped=True)
ABORTED = Upstream(S.ABORTED)
RUNNING = Upstream(S.RUNNING)
PENDING = Upstream(S.NOT_STARTED)

READINESS_CASES = [
    ([], Readiness("run")),
    ([OK, PARTIAL], Readiness("run")),
    ([OK, RUNNING], Readiness("wait")),
    ([PENDING], Readiness("wait")),
    ([FAILED], Readiness("settle", S.ABORTED, "upstream failed")),
    ([FAILED_TOLERATED, OK], Readiness("run")),
    ([SKIPPED], Readiness("settle", S.SKIPPED, "upstream skipped")),
    ([SKIPPED_CONTINUE], Readiness("run")),
    ([ABORTED], Readiness("settle", S.ABORTED, "")),
    # every dependency is looked at: an ended one settles the step while another runs, and
    # the last one that settles it, in the order of `depends`, wins (Dagu 1.30.2 isReady)
    ([RUNNING, FAILED], Readiness("settle", S.ABORTED, "upstream failed")),
    ([SKIPPED, RUNNING], Readiness("settle", S.SKIPPED, "upstream skipped")),
    ([SKIPPED, FAILED], Readiness("settle", S.ABORTED, "upstream failed")),
    ([FAILED, SKIPPED], Readiness("settle", S.SKIPPED, "upstream skipped")),
    ([FAILED_TOLERATED, SKIPPED_CONTINUE, RUNNING], Readiness("wait")),
]


@pytest.mark.parametrize(("upstream", "expected"), READINESS_CASES)
def test_readiness_decision(upstream: list[Upstream], expected: Readiness) -> None:
    assert decide_readiness(upstream) == expected


# ----------------------------------------------------------------------------- run status

STATUS_CASES = [
    # (steps, canceled, failed) -> status
    ([S.SUCCEEDED, S.SUCCEEDED], False, False, RunStatus.SUCCEEDED),
    ([S.SUCCEEDED, S.SKIPPED], False, False, RunStatus.SUCCEEDED),
    ([], False, False, RunStatus.SUCCEEDED),
    ([S.SUCCEEDED, S.FAILED], False, True, RunStatus.FAILED),
    ([S.FAILED], False, True, RunStatus.FAILED),
    ([S.SUCCEEDED, S.RUNNING], False, False, RunStatus.RUNNING),
    ([S.SUCCEEDED, S.NOT_STARTED], True, False, RunStatus.ABORTED),
    ([S.SUCCEEDED, S.SKIPPED], True, False, RunStatus.SUCCEEDED),  # nothing left to stop
    ([S.ABORTED], True, False, RunStatus.ABORTED),
    # a tolerated failure beside a success: partial success
    ([S.SUCCEEDED, (S.FAILED, True)], False, True, RunStatus.PARTIALLY_SUCCEEDED),
    ([S.PARTIALLY_SUCCEEDED, (S.FAILED, True)], False, True, RunStatus.PARTIALLY_SUCCEEDED),
    # a partially succeeded step (a sub-DAG that was) alone makes the run partial (Dagu)
    ([S.PARTIALLY_SUCCEEDED, S.SUCCEEDED], False, False, RunStatus.PARTIALLY_SUCCEEDED),
    ([S.PARTIALLY_SUCCEEDED, S.FAILED], False, True, RunStatus.FAILED),
    # ... but not with a hard failure too, nor without any success
    ([S.SUCCEEDED, (S.FAILED, True), S.FAILED], False, True, RunStatus.FAILED),
    ([(S.FAILED, True)], False, True, RunStatus.FAILED),
    ([S.SKIPPED, (S.FAILED, True)], False, True, RunStatus.FAILED),
]


@pytest.mark.parametrize(("steps", "canceled", "failed", "expected"), STATUS_CASES)
def test_run_status_decision(
    steps: list[StepStatus | tuple[StepStatus, bool]],
    canceled: bool,
    failed: bool,
    expected: RunStatus,
) -> None:
    outcomes = [StepOutcome(*s) if isinstance(s, tuple) else StepOutcome(s) for s in steps]
    decision = derive_run_status(outcomes, canceled=canceled, failed=failed)
    assert decision.status == expected
    assert decision.reason
