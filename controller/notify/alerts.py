"""Mail notifications: SMTP delivery and the "run finished" alert mails.

Owns `send_mail` (one message over SMTP: STARTTLS when offered, implicit TLS on port 465,
AUTH only when a username is set) and `notify_run_finished`, which decides from `mailOn`,
`errorMail`/`infoMail` and the steps' `mailOnError` which mails a finished run gets, builds
them and sends them. Called by the runner after the run's final status is recorded, and by
`controller.engine.executors.mail` (the `mail` step executor).

A mail failure never raises out of `notify_run_finished` and never changes a run's status: it
comes back as a human-readable note that the runner stores on the run. No message or note
ever contains the SMTP password.

`smtplib` and `email` are imported lazily: a run that sends no mail does not pay for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.spec import MailOnSpec, MailSpec, SmtpSpec, StepSpec
from model.status import RunStatus, StepStatus

if TYPE_CHECKING:
    import smtplib

    from model.loader import Dag

log = logging.getLogger(__name__)

DEFAULT_SMTP_PORT = 25
IMPLICIT_TLS_PORT = 465
# Bounds of what one alert mail carries from the step logs.
MAX_ATTACHMENT_BYTES = 1_048_576
ERROR_TAIL_LINES = 20
ERROR_TAIL_BYTES = 4096


class MailError(Exception):
    """A mail could not be delivered; the message is safe to show (never holds a password)."""


# --------------------------------------------------------------------------- delivery


def expand_smtp(smtp: SmtpSpec, expand: Callable[[str], str]) -> SmtpSpec:
    """`smtp` with `${VAR}` references in every field expanded."""
    return smtp.model_copy(
        update={
            "host": expand(smtp.host),
            "port": expand(smtp.port),
            "username": expand(smtp.username),
            "password": expand(smtp.password),
        }
    )


def _clean_header(value: str) -> str:
    # A CR or LF in a header would let a value inject headers (Dagu strips them too).
    return value.replace("\r", " ").replace("\n", " ").strip()


def _read_attachment(path: Path, limit: int) -> tuple[bytes, int]:
    """(content, full size): the whole file, or its last `limit` bytes when it is larger."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            if size > limit:
                fh.seek(size - limit)
            else:
                fh.seek(0)
            return fh.read(limit), size
    except OSError as exc:
        raise MailError(f"cannot read attachment {path}: {exc.strerror or exc}") from None


def build_message(
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    body: str,
    attachments: Sequence[Path] = (),
    max_attachment_bytes: int = MAX_ATTACHMENT_BYTES,
    mask_attachment: Callable[[bytes], bytes] | None = None,
) -> Any:
    """The `email.message.EmailMessage` to send; attachments larger than the limit are cut
    to their last `max_attachment_bytes` bytes and the body says so."""
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    parts: list[tuple[str, bytes]] = []
    cut_notes: list[str] = []
    for path in attachments:
        data, size = _read_attachment(Path(path), max_attachment_bytes)
        if size > len(data):
            cut_notes.append(
                f"Attachment {Path(path).name} was cut to its last {len(data)} bytes "
                f"(the file has {size} bytes)."
            )
        parts.append((Path(path).name, mask_attachment(data) if mask_attachment else data))
    if cut_notes:
        body = body.rstrip("\n") + "\n\n" + "\n".join(cut_notes) + "\n"

    msg = EmailMessage()
    msg["From"] = _clean_header(sender)
    msg["To"] = ", ".join(_clean_header(t) for t in to)
    msg["Subject"] = _clean_header(subject)
    msg["Date"] = formatdate(localtime=True)
    domain = sender.rpartition("@")[2].strip(" >") or "dagloop.local"
    msg["Message-ID"] = make_msgid(domain=_clean_header(domain))
    # Dagu sends HTML; a full HTML document is kept as HTML, anything else is plain text.
    if body.lstrip().lower().startswith("<!doctype html"):
        msg.set_content(body, subtype="html")
    else:
        msg.set_content(body)
    for name, data in parts:
        msg.add_attachment(data, maintype="text", subtype="plain", filename=name)
    return msg


def _describe(exc: BaseException) -> str:
    """A short, human-readable reason for a delivery failure."""
    import smtplib
    import socket
    import ssl

    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = ", ".join(
            f"{rcpt} ({code} {_text(msg)})" for rcpt, (code, msg) in exc.recipients.items()
        )
        return f"recipients refused: {refused}"
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return f"sender {exc.sender} refused: {exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"authentication failed: {exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"server refused: {exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"server disconnected: {exc}" if str(exc) else "server disconnected"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _deliver(
    *,
    host: str,
    port: int,
    implicit_tls: bool,
    username: str,
    password: str,
    sender: str,
    to: Sequence[str],
    message: Any,
    timeout_seconds: float,
) -> None:
    """One SMTP session; raises smtplib/ssl/OSError exceptions as they come."""
    import smtplib
    import ssl

    context = ssl.create_default_context()
    client: smtplib.SMTP
    if implicit_tls:
        client = smtplib.SMTP_SSL(host, port, timeout=timeout_seconds, context=context)
    else:
        client = smtplib.SMTP(host, port, timeout=timeout_seconds)
    try:
        client.ehlo_or_helo_if_needed()
        tls = implicit_tls
        if not implicit_tls and client.has_extn("starttls"):
            client.starttls(context=context)
            client.ehlo()
            tls = True
        # Like Dagu, skip AUTH when the server does not offer it: a relay may not need it.
        if username and client.has_extn("auth"):
            if not tls and not _is_loopback(host):
                raise MailError(
                    "refusing to send the SMTP password over an unencrypted connection "
                    "(the server offers no STARTTLS; use port 465 or enable STARTTLS)"
                )
            _login(client, username, password)
        client.send_message(message, from_addr=sender, to_addrs=list(to))
    finally:
        _close(client)


def _is_loopback(host: str) -> bool:
    """Whether `host` names this machine (where a clear-text password does not travel)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _login(client: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH with one mechanism: PLAIN, else LOGIN, else whatever smtplib supports.

    `smtplib.SMTP.login` retries every mechanism after a rejection, and some servers stall
    on the second attempt; one clear 535 is better.
    """
    offered = (client.esmtp_features.get("auth") or "").upper().split()
    for mechanism, method in (("PLAIN", client.auth_plain), ("LOGIN", client.auth_login)):
        if mechanism in offered:
            client.user, client.password = username, password
            client.auth(mechanism, method)
            return
    client.login(username, password)


def _close(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except Exception:  # the session is over either way; a failed QUIT changes nothing
        client.close()


def send_mail(
    *,
    smtp: SmtpSpec,
    sender: str,
    to: Sequence[str],
    subject: str,
    body: str,
    attachments: Sequence[Path] = (),
    max_attachment_bytes: int = MAX_ATTACHMENT_BYTES,
    timeout_seconds: float = 10.0,
    mask_attachment: Callable[[bytes], bytes] | None = None,
) -> None:
    """Send one mail through `smtp` (fields already expanded); raises `MailError`.

    STARTTLS when the server offers it, implicit TLS on port 465, plain otherwise; login only
    when `smtp.username` is set (and never in clear text to a host other than loopback).
    Each attachment is bounded by `max_attachment_bytes` (its tail is kept; the body says so).
    `timeout_seconds` bounds each network operation; `mask_attachment` (optional) rewrites
    each attachment's bytes, e.g. to mask secrets.
    """
    where = f"{smtp.host}:{smtp.port or DEFAULT_SMTP_PORT}"
    try:
        if not smtp.host:
            raise MailError("no SMTP host configured (smtp.host)")
        try:
            port = int(smtp.port) if smtp.port else DEFAULT_SMTP_PORT
        except ValueError:
            raise MailError(f"invalid SMTP port {smtp.port!r}") from None
        recipients = [t.strip() for t in to if t.strip()]
        if not recipients:
            raise MailError("no recipients")
        message = build_message(
            sender=sender,
            to=recipients,
            subject=subject,
            body=body,
            attachments=attachments,
            max_attachment_bytes=max_attachment_bytes,
            mask_attachment=mask_attachment,
        )
        _deliver(
            host=smtp.host,
            port=port,
            implicit_tls=port == IMPLICIT_TLS_PORT,
            username=smtp.username,
            password=smtp.password,
            sender=_clean_header(sender),
            to=recipients,
            message=message,
            timeout_seconds=timeout_seconds,
        )
    except MailError as exc:
        raise MailError(_scrub(f"SMTP {where}: {exc}", smtp.password)) from None
    except Exception as exc:
        raise MailError(_scrub(f"SMTP {where}: {_describe(exc)}", smtp.password)) from None


def _scrub(text: str, password: str) -> str:
    # Defence in depth: no server reply or library message may carry the password out.
    return text.replace(password, "*****") if password else text


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


def build_body(
    dag: Dag,
    details: Mapping[str, Any],
    step_logs: Mapping[str, Path],
    *,
    about_steps: Sequence[str] = (),
) -> str:
    """The plain-text body: run facts, one line per step, and the error tail of failed steps."""
    status = _status_of(details)
    label = str(details.get("statusLabel") or status.label)
    lines = [
        f"DAG:          {details.get('name') or dag.name}",
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
    for node in nodes:
        name = _node_name(node)
        if _node_status(node) != StepStatus.FAILED or name not in step_logs:
            continue
        log_path = Path(step_logs[name])
        source = _err_sibling(log_path) or log_path
        tail = _tail(source)
        if not tail and source != log_path:
            source, tail = log_path, _tail(log_path)
        if tail:
            lines += ["", f"Last lines of {name} ({source.name}):", tail]
    return "\n".join(lines) + "\n"


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
        log.warning("cannot decide the alert mails: %s", exc)
        return [f"mail not sent: cannot read the run details ({exc})"]
    if not planned:
        return notes
    hide = mask or (lambda s: s)
    smtp = expand_smtp(dag.spec.smtp, expand) if dag.spec.smtp is not None else None
    password = smtp.password if smtp is not None else ""

    def scrub(text: str) -> str:
        return _scrub(hide(text), password)

    def mask_bytes(data: bytes) -> bytes:
        if mask is None:
            return data
        return mask(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")

    status_label = str(details.get("statusLabel") or _status_of(details).label)
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
            subject = mail_subject(expand(mail.template.prefix), dag.name, status_label)
            body = build_body(dag, details, step_logs, about_steps=mail.steps)
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
    for note in notes:
        log.warning("%s", note)
    return notes
