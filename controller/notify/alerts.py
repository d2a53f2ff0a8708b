"""Alert mails of a finished run: which mails it sends, what they say, then sending them.

`notify_run_finished` is called by the engine (`controller.engine.launch`) after the run's final
status is recorded. The decisions are pure: `plan_mails` (from `mailOn`, `errorMail`/`infoMail`
and the steps' `mailOnError`), `mail_subject` and `format_body`. Reading log tails and
attachments and the delivery (`controller.notify.smtp.send_mail`) come after.

A mail failure never raises out of `notify_run_finished` and never changes a run's status: it
comes back as a human-readable note that the runner stores on the run and logs (as a run
event, in the run's log format: this module writes no log line itself). No message or note
ever contains the SMTP password.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.notify.smtp import MailError, expand_smtp, scrub_password, send_mail
from model.spec import MailOnSpec, MailSpec, StepSpec
from model.status import RunStatus, StepStatus

if TYPE_CHECKING:
    from model.loader import Dag


# Bounds of the error tail an alert mail quotes from a failed step's log.
ERROR_TAIL_LINES = 20
ERROR_TAIL_BYTES = 4096


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class PlannedMail:
    """One alert mail a finished run should send: which template and about which steps."""

    kind: str  # "error" | "info" | "step-error"
    template: MailSpec
    steps: tuple[str, ...] = field(default=())  # for "step-error": the failed mailOnError steps


def _status_of(details: Mapping[str, Any]) -> RunStatus:
    raw = details.get("status")
    if isinstance(raw, int):
        return RunStatus(raw)
    return RunStatus.from_label(str(details.get("statusLabel") or raw or "0"))


def _node_status(node: Mapping[str, Any]) -> StepStatus:
    raw = node.get("status")
    if isinstance(raw, int):
        return StepStatus(raw)
    return StepStatus[str(node.get("statusLabel") or "not_started").upper()]


def _node_name(node: Mapping[str, Any]) -> str:
    step = node.get("step")
    return str(step.get("name", "")) if isinstance(step, Mapping) else ""


def _find_step(dag: Dag, name: str) -> StepSpec | None:
    for step in dag.spec.steps:
        if step.name == name:
            return step
    for _, handler in dag.spec.handler_on.items():
        found: StepSpec = handler
        if found.name == name:
            return found
    return None


def plan_mails(dag: Dag, details: Mapping[str, Any]) -> list[PlannedMail]:
    """Which mails a finished run sends (pure; Dagu's `reporter.send` and `reportStep`).

    - failed or rejected, `mailOn.failure` and `errorMail` → the error mail;
    - succeeded or partially succeeded, `mailOn.success` and `infoMail` → the info mail;
    - failed steps with `mailOnError` and an `errorMail` → one mail per step, unless the run's
      error mail already goes out (it lists every step, so a second mail adds nothing).
    An aborted run (a stop request) sends none.
    """
    spec = dag.spec
    mail_on = spec.mail_on or MailOnSpec()
    status = _status_of(details)
    out: list[PlannedMail] = []
    if status in (RunStatus.FAILED, RunStatus.REJECTED):
        if mail_on.failure and spec.error_mail is not None:
            out.append(PlannedMail("error", spec.error_mail))
    elif status.is_success():
        if mail_on.success and spec.info_mail is not None:
            out.append(PlannedMail("info", spec.info_mail))
    if spec.error_mail is not None and not any(m.kind == "error" for m in out):
        for node in details.get("nodes") or []:
            name = _node_name(node)
            step = _find_step(dag, name)
            if step is not None and step.mail_on_error and _node_status(node) == StepStatus.FAILED:
                out.append(PlannedMail("step-error", spec.error_mail, (name,)))
    return out


def mail_subject(prefix: str, dag_name: str, status_label: str) -> str:
    """Dagu's subject, `"<prefix> <DAG name> (<status>)"` (no leading space without prefix)."""
    return f"{prefix} {dag_name} ({status_label})".strip()


@dataclass(frozen=True)
class ErrorTail:
    """The last lines of a failed step's log, quoted in the body."""

    step: str
    source: str  # the log file's name (`.err`, or the `.out` when the `.err` is empty)
    text: str


def format_body(
    dag_name: str,
    details: Mapping[str, Any],
    *,
    about_steps: Sequence[str] = (),
    tails: Sequence[ErrorTail] = (),
) -> str:
    """The plain-text body (pure): run facts, one line per step, the failed steps' log tails."""
    status = _status_of(details)
    label = str(details.get("statusLabel") or status.label)
    lines = [
        f"DAG:          {details.get('name') or dag_name}",
        f"Run ID:       {details.get('dagRunId', '')}",
        f"Status:       {label}",
        f"Started at:   {details.get('startedAt') or '-'}",
        f"Finished at:  {details.get('finishedAt') or '-'}",
    ]
    if details.get("params"):
        lines.append(f"Params:       {details['params']}")
    if about_steps:
        lines.append(f"Failed step(s) with mailOnError: {', '.join(about_steps)}")
    nodes = list(details.get("nodes") or [])
    lines += ["", "Steps:"]
    width = max([len(_node_name(n)) for n in nodes] + [4])
    for i, node in enumerate(nodes, 1):
        node_label = str(node.get("statusLabel") or _node_status(node).label)
        exit_code = node.get("exitCode")
        row = f"  {i:>2}. {_node_name(node):<{width}}  {node_label:<19}"
        row += f"  exit code {exit_code if exit_code is not None else '-'}"
        lines.append(row.rstrip())
        if node.get("error"):
            lines.append(f"      error: {node['error']}")
    if not nodes:
        lines.append("  (none)")
    for tail in tails:
        lines += ["", f"Last lines of {tail.step} ({tail.source}):", tail.text]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- logs, delivery


def _tail(path: Path, *, lines: int = ERROR_TAIL_LINES, limit: int = ERROR_TAIL_BYTES) -> str:
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - limit))
            data = fh.read(limit)
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def _err_sibling(path: Path) -> Path | None:
    if path.suffix == ".out":
        err = path.with_suffix(".err")
        if err != path and err.is_file():
            return err
    return None


def error_tails(details: Mapping[str, Any], step_logs: Mapping[str, Path]) -> list[ErrorTail]:
    """The log tails of the run's failed steps, in step order: the `.err` next to a step's
    `.out` is preferred; the `.out` when the `.err` is empty; nothing when both are."""
    out: list[ErrorTail] = []
    for node in details.get("nodes") or []:
        name = _node_name(node)
        if _node_status(node) != StepStatus.FAILED or name not in step_logs:
            continue
        log_path = Path(step_logs[name])
        source = _err_sibling(log_path) or log_path
        tail = _tail(source)
        if not tail and source != log_path:
            source, tail = log_path, _tail(log_path)
        if tail:
            out.append(ErrorTail(name, source.name, tail))
    return out


def _attachments(step_logs: Mapping[str, Path]) -> list[Path]:
    """Every non-empty step log, with the step's `.err` next to its `.out`."""
    out: list[Path] = []
    for path in step_logs.values():
        for candidate in (Path(path), _err_sibling(Path(path))):
            if candidate is None or candidate in out:
                continue
            try:
                if candidate.is_file() and candidate.stat().st_size > 0:
                    out.append(candidate)
            except OSError:
                continue
    return out


def notify_run_finished(
    *,
    dag: Dag,
    details: Mapping[str, Any],
    expand: Callable[[str], str],
    step_logs: Mapping[str, Path],
    mask: Callable[[str], str] | None = None,
    timeout_seconds: float = 10.0,
) -> list[str]:
    """Send the alert mails of a finished run; returns notes of failures, never raises.

    `details` is the run's Dagu `dagRunDetails` dict; `step_logs` maps a step name to its
    log file (the `.out`; a sibling `.err` is attached too and is preferred for the error
    tail). `mask` (the run's `SecretMasker.mask`) is applied to subject, body and notes.
    """
    notes: list[str] = []
    try:
        planned = plan_mails(dag, details)
    except Exception as exc:  # a malformed `details` must not take the runner down
        return [f"mail not sent: cannot read the run details ({exc})"]
    if not planned:
        return notes
    hide = mask or (lambda s: s)
    smtp = expand_smtp(dag.spec.smtp, expand) if dag.spec.smtp is not None else None
    password = smtp.password if smtp is not None else ""

    def scrub(text: str) -> str:
        return scrub_password(hide(text), password)

    def mask_bytes(data: bytes) -> bytes:
        if mask is None:
            return data
        return mask(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")

    status_label = str(details.get("statusLabel") or _status_of(details).label)
    tails: list[ErrorTail] | None = None  # read once, and only when a mail goes out
    for mail in planned:
        to = [expand(t) for t in mail.template.to]
        target = ", ".join(to) or "(no recipients)"
        what = f"{mail.kind} mail to {target}"
        if smtp is None or not smtp.host:
            notes.append(scrub(f"{what} not sent: no SMTP server configured (smtp.host)"))
            continue
        if not to:
            notes.append(scrub(f"{what} not sent: the mail template has no 'to'"))
            continue
        try:
            if tails is None:
                tails = error_tails(details, step_logs)
            subject = mail_subject(expand(mail.template.prefix), dag.name, status_label)
            body = format_body(dag.name, details, about_steps=mail.steps, tails=tails)
            attachments = _attachments(step_logs) if mail.template.attach_logs else []
            send_mail(
                smtp=smtp,
                sender=expand(mail.template.from_),
                to=to,
                subject=hide(subject),
                body=hide(body),
                attachments=attachments,
                timeout_seconds=timeout_seconds,
                mask_attachment=mask_bytes,
            )
        except MailError as exc:
            notes.append(scrub(f"{what} failed: {exc}"))
        except Exception as exc:  # never let a mail bug change the run's outcome
            notes.append(scrub(f"{what} failed: unexpected error: {exc}"))
    return notes
