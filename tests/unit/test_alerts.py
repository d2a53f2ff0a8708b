"""Which alert mails a finished run sends and what they say: the pure decisions of
`controller.notify.alerts`, on plain run details (delivery is tested in
tests/integration/test_mail.py against a real SMTP server)."""

from __future__ import annotations

from typing import Any

from controller.notify.alerts import ErrorTail, format_body, plan_mails
from model.loader import Dag, load_dag_text

MAILS = """\
name: etl
mailOn: {failure: true, success: true}
errorMail: {from: a@x, to: ops@x, prefix: "[ERR]"}
infoMail: {from: a@x, to: ops@x, prefix: "[OK]"}
steps:
  - name: extract
    command: "false"
    mailOnError: true
  - name: load
    command: "true"
"""


def _details(status: str, **steps: str) -> dict[str, Any]:
    return {
        "name": "etl",
        "dagRunId": "r1",
        "statusLabel": status,
        "nodes": [
            {"step": {"name": n}, "statusLabel": s, "exitCode": 1 if s == "failed" else 0}
            for n, s in steps.items()
        ],
    }


def _dag(text: str = MAILS) -> Dag:
    return load_dag_text(text, file="etl.yaml")


def test_failed_run_sends_only_the_error_mail_even_with_mail_on_error_steps() -> None:
    planned = plan_mails(_dag(), _details("failed", extract="failed", load="not_started"))
    assert [(m.kind, m.steps) for m in planned] == [("error", ())]


def test_succeeded_run_sends_the_info_mail() -> None:
    planned = plan_mails(_dag(), _details("succeeded", extract="succeeded", load="succeeded"))
    assert [m.kind for m in planned] == ["info"]


def test_mail_on_error_step_mails_when_the_run_error_mail_is_off() -> None:
    dag = _dag(MAILS.replace("failure: true", "failure: false"))
    planned = plan_mails(dag, _details("partially_succeeded", extract="failed", load="succeeded"))
    assert [(m.kind, m.steps) for m in planned] == [("info", ()), ("step-error", ("extract",))]


def test_aborted_run_sends_nothing() -> None:
    assert plan_mails(_dag(), _details("aborted", extract="aborted")) == []


def test_body_lists_run_facts_steps_and_quoted_tails() -> None:
    body = format_body(
        "etl",
        _details("failed", extract="failed", load="not_started"),
        about_steps=("extract",),
        tails=(ErrorTail("extract", "extract.err", "boom"),),
    )
    assert body.splitlines() == [
        "DAG:          etl",
        "Run ID:       r1",
        "Status:       failed",
        "Started at:   -",
        "Finished at:  -",
        "Failed step(s) with mailOnError: extract",
        "",
        "Steps:",
        "   1. extract  failed               exit code 1",
        "   2. load     not_started          exit code 0",
        "",
        "Last lines of extract (extract.err):",
        "boom",
    ]
