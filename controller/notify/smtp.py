"""SMTP delivery: one message to one server, with TLS and AUTH done safely.

Owns the SMTP session (`send_mail`: STARTTLS when offered, implicit TLS on port 465, AUTH only
when a username is set and never in clear text to a host other than loopback), the message
(`build_message`, attachments bounded to their tail), `${VAR}` expansion of the `smtp` settings
(`expand_smtp`) and `MailError`, whose text is safe to show: no message or error ever contains
the SMTP password (`scrub_password`).

Callers: the alert mails of a finished run (`controller.notify.alerts`) and the `mail` step
executor (`controller.engine.executors.mail`).

`smtplib`, `ssl` and `email` are imported lazily: a run that sends no mail does not pay for them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.spec import SmtpSpec

if TYPE_CHECKING:
    import smtplib

DEFAULT_SMTP_PORT = 25
IMPLICIT_TLS_PORT = 465
# Bound of what one attachment carries from a log file (its tail is kept).
MAX_ATTACHMENT_BYTES = 1_048_576


class MailError(Exception):
    """A mail could not be delivered; the message is safe to show (never holds a password)."""


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
        maintype, _, subtype = _attachment_type(name, data).partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg


def _attachment_type(name: str, data: bytes) -> str:
    """The MIME type of an attachment: from its name (`mimetypes`); a compressed file
    (`x.csv.gz`) is binary, whatever it holds; a name without a known type (a step's `.out`
    log) is plain text when its content is UTF-8, else binary."""
    import mimetypes

    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if encoding is not None:
        return "application/octet-stream"
    if guessed is not None:
        return guessed
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain"


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
        raise MailError(scrub_password(f"SMTP {where}: {exc}", smtp.password)) from None
    except Exception as exc:
        raise MailError(scrub_password(f"SMTP {where}: {_describe(exc)}", smtp.password)) from None


def scrub_password(text: str, password: str) -> str:
    """`text` with `password` masked: no server reply or library message may carry it out."""
    return text.replace(password, "*****") if password else text
