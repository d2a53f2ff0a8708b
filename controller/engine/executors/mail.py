"""The `mail` step executor (`type: mail`, config `from`, `to`, `subject`, `message`,
`attachments`).

Called by the runner for a step whose executor type is `mail`; delivery is
`controller.notify.smtp.send_mail` through the DAG's `smtp` server. Output follows Dagu's mail
executor: a summary of the mail on stdout, then "sending email succeed."; on failure the
reason on stderr and exit code 1. Unlike Dagu 1.30 (which ignores them), `attachments` are
sent, each bounded like alert attachments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from controller.notify.smtp import MailError, expand_smtp, send_mail
from model.spec import SmtpSpec

_SUMMARY = "sending email\n-----\nfrom: {}\nto: {}\nsubject: {}\nmessage: {}\n-----\n"


def _recipients(value: Any, expand: Callable[[str], str]) -> list[str]:
    """`to` as a string (comma-separated allowed) or a list of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, list | tuple):
        items = [str(v) for v in value if v is not None]
    else:
        raise ValueError(f"invalid type for 'to': expected a string or a list, got {value!r}")
    out: list[str] = []
    for item in items:
        out += [a.strip() for a in expand(item).split(",") if a.strip()]
    return out


def run_mail_step(
    *,
    config: Mapping[str, Any],
    smtp: SmtpSpec | None,
    expand: Callable[[str], str],
    stdout: BinaryIO,
    stderr: BinaryIO,
    working_dir: Path | None = None,
) -> int:
    """Send the mail a `mail` step describes; returns the step's exit code (0 or 1).

    `${VAR}` references in every config field and in the `smtp` fields are expanded with
    `expand`. Relative attachment paths resolve against `working_dir` (default: the cwd).
    """

    def fail(message: str) -> int:
        stderr.write(f"mail: {message}\n".encode())
        stderr.flush()
        return 1

    try:
        to = _recipients(config.get("to"), expand)
    except ValueError as exc:
        return fail(str(exc))
    if not to:
        return fail("no valid recipients specified")
    if smtp is None or not smtp.host:
        return fail("no SMTP server configured (set smtp.host in the DAG or base.yaml)")
    sender = expand(str(config.get("from") or ""))
    subject = expand(str(config.get("subject") or ""))
    message = expand(str(config.get("message") or ""))
    raw_attachments = config.get("attachments") or []
    if isinstance(raw_attachments, str):
        raw_attachments = [raw_attachments]
    attachments = []
    for item in raw_attachments:
        path = Path(expand(str(item))).expanduser()
        if not path.is_absolute() and working_dir is not None:
            path = working_dir / path
        attachments.append(path)

    stdout.write(_SUMMARY.format(sender, ", ".join(to), subject, message).encode())
    stdout.flush()
    try:
        send_mail(
            smtp=expand_smtp(smtp, expand),
            sender=sender,
            to=to,
            subject=subject,
            body=message,
            attachments=attachments,
        )
    except MailError as exc:
        return fail(f"error occurred: {exc}")
    stdout.write(b"sending email succeed.\n")
    stdout.flush()
    return 0
