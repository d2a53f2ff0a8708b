"""Alert mails and the `mail` executor against a real SMTP server (aiosmtpd) on 127.0.0.1.

The server runs in this process on an ephemeral port: plain, with STARTTLS (a self-signed
certificate made with `cryptography`, trusted by the client through SSL_CERT_FILE), with
implicit TLS, with AUTH, refusing (5xx), or not there at all (a closed port).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import io
import ipaddress
import json
import socket
import ssl
import string
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from controller.engine.executors.mail import run_mail_step
from controller.notify.alerts import mail_subject, notify_run_finished
from controller.notify.smtp import MailError, _deliver, build_message, send_mail
from controller.secrets import SecretMasker
from model.loader import Dag, load_base, load_dag_text
from model.spec import SmtpSpec
from tests.helpers import run_cli

aiosmtpd_smtp = pytest.importorskip("aiosmtpd.smtp")

# aiosmtpd warns about AUTH without TLS; the loopback AUTH tests want exactly that.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USER, PASSWORD = "alerts@example.com", "s3cr3t-Pa55word"


@dataclass
class Inbox:
    """What the SMTP server received."""

    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    tls_sessions: list[bool] = field(default_factory=list)
    refuse: str | None = None  # an SMTP reply for DATA, e.g. "554 5.7.1 rejected"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return self.refuse
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        self.tls_sessions.append(session.ssl is not None)
        return "250 OK"

    def only(self) -> EmailMessage:
        assert len(self.messages) == 1, [m[2]["Subject"] for m in self.messages]
        return self.messages[0][2]


@dataclass
class SmtpServer:
    port: int
    inbox: Inbox

    def spec(self, **extra: str) -> SmtpSpec:
        return SmtpSpec(host="127.0.0.1", port=str(self.port), **extra)


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def start_smtp() -> Iterator[Callable[..., SmtpServer]]:
    """Start aiosmtpd servers in a background event loop; all are stopped after the test."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    servers: list[asyncio.Server] = []

    def start(
        *,
        auth: bool = False,
        auth_require_tls: bool = True,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
    ) -> SmtpServer:
        inbox = Inbox()

        def factory() -> Any:
            return aiosmtpd_smtp.SMTP(
                inbox,
                hostname="127.0.0.1",
                tls_context=starttls,
                authenticator=_authenticator if auth else None,
                auth_required=auth,
                auth_require_tls=auth_require_tls,
            )

        async def create() -> asyncio.Server:
            return await loop.create_server(factory, "127.0.0.1", 0, ssl=implicit_tls)

        server = asyncio.run_coroutine_threadsafe(create(), loop).result(10)
        servers.append(server)
        return SmtpServer(server.sockets[0].getsockname()[1], inbox)

    try:
        yield start
    finally:

        async def stop() -> None:
            for server in servers:
                server.close()
                await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert file, key file)."""
    x509 = pytest.importorskip("cryptography.x509", reason="needs the cryptography package")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def server_tls(tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server TLS context; the client trusts its certificate (and only it) via SSL_CERT_FILE."""
    cert_file, key_file = tls_files
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def expander(values: dict[str, str]) -> Callable[[str], str]:
    return lambda text: string.Template(text).safe_substitute(values)


# --------------------------------------------------------------------------- fixtures of DAGs


def make_dag(port: int, *, mail_on: str = "", extra: str = "", password: str = "") -> Dag:
    text = f"""
name: nightly
smtp:
  host: 127.0.0.1
  port: {port}
  username: "{"${SMTP_USER}" if password else ""}"
  password: "{password}"
errorMail:
  from: dagloop@example.com
  to: [ops@example.com, oncall@example.com]
  prefix: "[ERROR]"
  attachLogs: true
infoMail:
  from: dagloop@example.com
  to: team@example.com
  prefix: "[INFO]"
{mail_on}
{extra}
steps:
  - name: extract
    command: echo extracting
  - name: load
    command: ./load.sh
    mailOnError: true
  - name: report
    command: echo report
"""
    return load_dag_text(text, file="nightly.yaml")


def details(status: str, *, failed: str | None = "load") -> dict[str, Any]:
    codes = {"failed": 2, "aborted": 3, "succeeded": 4, "partially_succeeded": 6}
    nodes = []
    for name in ("extract", "load", "report"):
        if name == failed:
            node = {"status": 2, "statusLabel": "failed", "exitCode": 3, "error": "exit status 3"}
        else:
            node = {"status": 4, "statusLabel": "succeeded", "exitCode": 0, "error": ""}
        nodes.append({"step": {"name": name}, **node})
    return {
        "dagRunId": "0193-run-id",
        "name": "nightly",
        "status": codes[status],
        "statusLabel": status,
        "startedAt": "2026-01-02T03:04:05Z",
        "finishedAt": "2026-01-02T03:04:09Z",
        "nodes": nodes,
    }


@pytest.fixture
def step_logs(tmp_path: Path) -> dict[str, Path]:
    logs = tmp_path / "logs"
    logs.mkdir()
    out: dict[str, Path] = {}
    for name in ("extract", "load", "report"):
        (logs / f"{name}.out").write_text(f"{name} stdout line\n")
        out[name] = logs / f"{name}.out"
    (logs / "load.err").write_text("".join(f"err line {i}\n" for i in range(50)))
    return out


ON_FAILURE = "mailOn:\n  failure: true\n  success: false"
ON_BOTH = "mailOn:\n  failure: true\n  success: true"


def attachments_of(msg: EmailMessage) -> dict[str, bytes]:
    out = {}
    for part in msg.iter_attachments():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        out[str(part.get_filename())] = payload
    return out


# --------------------------------------------------------------------------- run alerts


def test_failure_mail_is_delivered_with_run_facts_steps_and_error_tail(
    start_smtp: Callable[..., SmtpServer], step_logs: dict[str, Path]
) -> None:
    srv = start_smtp()
    dag = make_dag(srv.port, mail_on=ON_FAILURE)
    notes = notify_run_finished(
        dag=dag, details=details("failed"), expand=expander({}), step_logs=step_logs
    )
    assert notes == []
    mail_from, rcpts, msg = srv.inbox.messages[0]
    assert len(srv.inbox.messages) == 1  # the run mail covers the mailOnError step too
    assert mail_from == "dagloop@example.com"
    assert rcpts == ["ops@example.com", "oncall@example.com"]
    assert msg["Subject"] == "[ERROR] nightly (failed)"
    body = msg.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "Run ID:       0193-run-id" in text
    assert "Started at:   2026-01-02T03:04:05Z" in text
    assert "Finished at:  2026-01-02T03:04:09Z" in text
    assert "load" in text and "failed" in text and "exit code 3" in text
    assert "error: exit status 3" in text
    # the error tail: the last lines of the failed step's stderr, not the whole file
    assert "err line 49" in text and "err line 30" in text and "err line 29" not in text
    files = attachments_of(msg)
    assert set(files) == {"extract.out", "load.out", "load.err", "report.out"}
    assert files["load.err"].startswith(b"err line 0\n")


def test_a_merged_step_log_is_quoted_and_attached_once(
    start_smtp: Callable[..., SmtpServer], step_logs: dict[str, Path]
) -> None:
    # logOutput: merged: the step's one `.log` is both its stdout and stderr record
    merged = step_logs["load"].with_suffix(".log")
    merged.write_text("load stdout line\n" + "".join(f"err line {i}\n" for i in range(50)))
    logs = {**step_logs, "load": merged}
    srv = start_smtp()
    notes = notify_run_finished(
        dag=make_dag(srv.port, mail_on=ON_FAILURE),
        details=details("failed"),
        expand=expander({}),
        step_logs=logs,
    )
    assert notes == []
    _, _, msg = srv.inbox.messages[0]
    body = msg.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "Last lines of load (load.log):" in text and "err line 49" in text
    assert set(attachments_of(msg)) == {"extract.out", "load.log", "report.out"}


def test_success_mail_is_sent_only_when_enabled(
    start_smtp: Callable[..., SmtpServer], step_logs: dict[str, Path]
) -> None:
    srv = start_smtp()
    ok = details("succeeded", failed=None)
    enabled = make_dag(srv.port, mail_on=ON_BOTH)
    assert notify_run_finished(dag=enabled, details=ok, expand=expander({}), step_logs={}) == []
    msg = srv.inbox.only()
    assert msg["Subject"] == "[INFO] nightly (succeeded)"
    assert msg["To"] == "team@example.com"
    assert list(msg.iter_attachments()) == []  # infoMail has no attachLogs

    disabled = make_dag(srv.port, mail_on=ON_FAILURE)
    notify_run_finished(dag=disabled, details=ok, expand=expander({}), step_logs=step_logs)
    no_mail_on = make_dag(srv.port)
    notify_run_finished(dag=no_mail_on, details=ok, expand=expander({}), step_logs=step_logs)
    assert len(srv.inbox.messages) == 1


def test_no_run_mail_on_failure_when_disabled_nor_on_abort(
    start_smtp: Callable[..., SmtpServer], step_logs: dict[str, Path]
) -> None:
    srv = start_smtp()
    dag = make_dag(srv.port, mail_on="mailOn:\n  failure: false\n  success: true")
    notify_run_finished(
        dag=dag, details=details("failed", failed="extract"), expand=expander({}), step_logs={}
    )
    dag = make_dag(srv.port, mail_on=ON_BOTH)
    notify_run_finished(
        dag=dag, details=details("aborted", failed=None), expand=expander({}), step_logs={}
    )
    assert srv.inbox.messages == []


def test_mail_on_error_step_mails_without_mail_on(
    start_smtp: Callable[..., SmtpServer], step_logs: dict[str, Path]
) -> None:
    srv = start_smtp()
    dag = make_dag(srv.port)  # no mailOn at all
    # continueOn let the run end partially succeeded; the step still failed
    run = details("partially_succeeded", failed="load")
    assert notify_run_finished(dag=dag, details=run, expand=expander({}), step_logs=step_logs) == []
    msg = srv.inbox.only()
    assert msg["Subject"] == "[ERROR] nightly (partially_succeeded)"
    body = msg.get_body(("plain",))
    assert body is not None
    assert "Failed step(s) with mailOnError: load" in body.get_content()

    # a failed step without mailOnError sends nothing
    notify_run_finished(
        dag=dag, details=details("failed", failed="extract"), expand=expander({}), step_logs={}
    )
    assert len(srv.inbox.messages) == 1


def test_large_logs_are_cut_and_the_body_says_so(
    start_smtp: Callable[..., SmtpServer], step_logs: dict[str, Path]
) -> None:
    srv = start_smtp()
    big = step_logs["load"]
    big.write_bytes(b"x" * 1_200_000 + b"THE-END\n")
    dag = make_dag(srv.port, mail_on=ON_FAILURE)
    assert (
        notify_run_finished(
            dag=dag, details=details("failed"), expand=expander({}), step_logs=step_logs
        )
        == []
    )
    msg = srv.inbox.only()
    files = attachments_of(msg)
    assert len(files["load.out"]) == 1_048_576
    assert files["load.out"].endswith(b"THE-END\n")
    body = msg.get_body(("plain",))
    assert body is not None
    assert "load.out was cut to its last 1048576 bytes (the file has 1200008 bytes)" in (
        body.get_content()
    )


def test_secrets_are_masked_in_subject_body_and_attachments(
    start_smtp: Callable[..., SmtpServer], step_logs: dict[str, Path]
) -> None:
    srv = start_smtp()
    step_logs["load"].write_text("token=tok-ABCDEF-123 leaked\n")
    dag = make_dag(srv.port, mail_on=ON_FAILURE)
    run = details("failed")
    run["nodes"][1]["error"] = "auth with tok-ABCDEF-123 failed"
    masker = SecretMasker(["tok-ABCDEF-123"])
    notify_run_finished(
        dag=dag, details=run, expand=expander({}), step_logs=step_logs, mask=masker.mask
    )
    msg = srv.inbox.only()
    raw = msg.as_bytes()
    assert b"tok-ABCDEF-123" not in raw
    assert attachments_of(msg)["load.out"] == b"token=***** leaked\n"


def test_auth_on_loopback_with_expanded_credentials(
    start_smtp: Callable[..., SmtpServer],
) -> None:
    srv = start_smtp(auth=True, auth_require_tls=False)
    dag = make_dag(srv.port, mail_on=ON_FAILURE, password="${SMTP_PASSWORD}")
    values = {"SMTP_USER": USER, "SMTP_PASSWORD": PASSWORD}
    notes = notify_run_finished(
        dag=dag, details=details("failed"), expand=expander(values), step_logs={}
    )
    assert notes == []
    assert srv.inbox.only()["Subject"] == "[ERROR] nightly (failed)"


def test_wrong_password_is_a_note_without_the_password(
    start_smtp: Callable[..., SmtpServer],
) -> None:
    srv = start_smtp(auth=True, auth_require_tls=False)
    wrong = "wr0ng-Pa55word-xyz"
    dag = make_dag(srv.port, mail_on=ON_FAILURE, password=wrong)
    notes = notify_run_finished(
        dag=dag, details=details("failed"), expand=expander({"SMTP_USER": USER}), step_logs={}
    )
    assert len(notes) == 1
    assert "authentication failed: 535" in notes[0]
    assert "ops@example.com" in notes[0]
    assert wrong not in notes[0]
    assert srv.inbox.messages == []


def test_starttls_is_used_when_offered_and_auth_happens_inside_it(
    start_smtp: Callable[..., SmtpServer], server_tls: ssl.SSLContext
) -> None:
    # auth_require_tls: the server offers AUTH only after STARTTLS, so delivery proves TLS.
    srv = start_smtp(auth=True, auth_require_tls=True, starttls=server_tls)
    send_mail(
        smtp=srv.spec(username=USER, password=PASSWORD),
        sender="dagloop@example.com",
        to=["ops@example.com"],
        subject="tls",
        body="over STARTTLS",
    )
    assert srv.inbox.only()["Subject"] == "tls"
    assert srv.inbox.tls_sessions == [True]


def test_starttls_with_an_untrusted_certificate_fails(
    start_smtp: Callable[..., SmtpServer],
    server_tls: ssl.SSLContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    srv = start_smtp(starttls=server_tls)
    other = tmp_path / "empty.pem"
    other.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(other))  # trust nothing
    with pytest.raises(MailError, match="TLS error"):
        send_mail(
            smtp=srv.spec(), sender="a@example.com", to=["b@example.com"], subject="s", body="b"
        )
    assert srv.inbox.messages == []


def test_implicit_tls_session(
    start_smtp: Callable[..., SmtpServer], server_tls: ssl.SSLContext
) -> None:
    # Port 465 selects implicit TLS in send_mail; here the same path runs on an ephemeral port.
    srv = start_smtp(implicit_tls=server_tls)
    message = build_message(sender="a@example.com", to=["b@example.com"], subject="s", body="b")
    _deliver(
        host="127.0.0.1",
        port=srv.port,
        implicit_tls=True,
        username="",
        password="",
        sender="a@example.com",
        to=["b@example.com"],
        message=message,
        timeout_seconds=5,
    )
    assert srv.inbox.only()["Subject"] == "s"


def test_a_refusing_server_gives_a_note_not_an_exception(
    start_smtp: Callable[..., SmtpServer],
) -> None:
    srv = start_smtp(auth=True, auth_require_tls=False)
    srv.inbox.refuse = "554 5.7.1 message rejected"
    dag = make_dag(srv.port, mail_on=ON_FAILURE, password=PASSWORD)
    notes = notify_run_finished(
        dag=dag, details=details("failed"), expand=expander({"SMTP_USER": USER}), step_logs={}
    )
    assert len(notes) == 1
    assert "554" in notes[0] and "message rejected" in notes[0]
    assert PASSWORD not in notes[0]


def test_a_server_that_is_down_gives_a_note(step_logs: dict[str, Path]) -> None:
    dag = make_dag(closed_port(), mail_on=ON_FAILURE, password=PASSWORD)
    notes = notify_run_finished(
        dag=dag, details=details("failed"), expand=expander({"SMTP_USER": USER}), step_logs={}
    )
    assert len(notes) == 1
    assert notes[0].startswith("error mail to ops@example.com, oncall@example.com failed:")
    assert "connection refused" in notes[0]
    assert PASSWORD not in notes[0]


def test_missing_smtp_is_a_note() -> None:
    dag = load_dag_text(
        "name: x\nerrorMail: {from: a@example.com, to: b@example.com}\n"
        "mailOn: {failure: true}\nsteps: [echo hi]\n"
    )
    run = details("failed", failed=None)
    notes = notify_run_finished(dag=dag, details=run, expand=expander({}), step_logs={})
    assert notes == ["error mail to b@example.com not sent: no SMTP server configured (smtp.host)"]


def test_base_yaml_alert_settings_are_inherited_and_overridden(
    start_smtp: Callable[..., SmtpServer], tmp_path: Path
) -> None:
    srv = start_smtp()
    base_file = tmp_path / "base.yaml"
    base_file.write_text(
        f"""
smtp:
  host: "${{SMTP_HOST}}"
  port: {srv.port}
errorMail:
  from: dagloop@example.com
  to: ops-team@example.com
  prefix: "[ERROR]"
mailOn:
  failure: true
"""
    )
    base = load_base(base_file)
    # The DAG keeps base's smtp and errorMail.from/prefix, overrides errorMail.to.
    dag = load_dag_text(
        "name: etl\nerrorMail:\n  to: [data@example.com]\nsteps: [echo hi]\n", base=base
    )
    run = details("failed", failed=None)
    notes = notify_run_finished(
        dag=dag, details=run, expand=expander({"SMTP_HOST": "127.0.0.1"}), step_logs={}
    )
    assert notes == []
    mail_from, rcpts, msg = srv.inbox.messages[0]
    assert (mail_from, rcpts) == ("dagloop@example.com", ["data@example.com"])
    assert msg["Subject"] == "[ERROR] etl (failed)"
    # mailOn is replaced as a whole: a DAG saying only `success: true` turns failure mail off.
    quiet = load_dag_text("name: etl\nmailOn: {success: true}\nsteps: [echo hi]\n", base=base)
    notify_run_finished(
        dag=quiet, details=run, expand=expander({"SMTP_HOST": "127.0.0.1"}), step_logs={}
    )
    assert len(srv.inbox.messages) == 1


def test_subject_format_matches_dagu() -> None:
    assert mail_subject("[ERROR]", "etl", "failed") == "[ERROR] etl (failed)"
    assert mail_subject("", "etl", "succeeded") == "etl (succeeded)"


# --------------------------------------------------------------------------- mail executor


def test_mail_step_sends_with_list_recipients_and_attachments(
    start_smtp: Callable[..., SmtpServer], tmp_path: Path
) -> None:
    srv = start_smtp()
    (tmp_path / "report.csv").write_text("a,b\n1,2\n")
    out, err = io.BytesIO(), io.BytesIO()
    code = run_mail_step(
        config={
            "from": "dagloop@example.com",
            "to": ["${WHO}", "b@example.com"],
            "subject": "Report for ${DAG_NAME}",
            "message": "See attached.\nBye",
            "attachments": ["report.csv"],
        },
        smtp=SmtpSpec(host="${SMTP_HOST}", port=srv.port),
        expand=expander({"WHO": "a@example.com", "DAG_NAME": "etl", "SMTP_HOST": "127.0.0.1"}),
        stdout=out,
        stderr=err,
        working_dir=tmp_path,
    )
    assert code == 0, err.getvalue()
    mail_from, rcpts, msg = srv.inbox.messages[0]
    assert mail_from == "dagloop@example.com"
    assert rcpts == ["a@example.com", "b@example.com"]
    assert msg["Subject"] == "Report for etl"
    assert attachments_of(msg) == {"report.csv": b"a,b\n1,2\n"}
    text = out.getvalue().decode()
    assert "to: a@example.com, b@example.com\nsubject: Report for etl\n" in text
    assert text.endswith("sending email succeed.\n")


def test_mail_step_attachments_carry_their_real_mime_types(
    start_smtp: Callable[..., SmtpServer], tmp_path: Path
) -> None:
    srv = start_smtp()
    files = {
        "report.csv": b"a,b\n1,2\n",
        "chart.png": b"\x89PNG\r\n\x1a\n\x00",
        "data.json": b"{}",
        "report.csv.gz": b"\x1f\x8b\x08\x00",
        "step.out": b"plain log line\n",
        "blob.bin2": b"\xff\xfe\x00",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    code = run_mail_step(
        config={"from": "d@example.com", "to": "a@example.com", "attachments": list(files)},
        smtp=SmtpSpec(host="127.0.0.1", port=srv.port),
        expand=expander({}),
        stdout=io.BytesIO(),
        stderr=io.BytesIO(),
        working_dir=tmp_path,
    )
    assert code == 0
    msg = srv.inbox.messages[0][2]
    assert {str(p.get_filename()): p.get_content_type() for p in msg.iter_attachments()} == {
        "report.csv": "text/csv",
        "chart.png": "image/png",
        "data.json": "application/json",
        "report.csv.gz": "application/octet-stream",  # compressed: not text/csv
        "step.out": "text/plain",  # no known type, UTF-8 content
        "blob.bin2": "application/octet-stream",  # no known type, not text
    }
    assert attachments_of(msg) == files


def test_mail_step_failures_exit_1() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    smtp = SmtpSpec(host="127.0.0.1", port=closed_port())
    cfg = {"from": "a@example.com", "to": "b@example.com", "subject": "s", "message": "m"}
    assert run_mail_step(config=cfg, smtp=smtp, expand=str, stdout=out, stderr=err) == 1
    assert b"connection refused" in err.getvalue()
    err = io.BytesIO()
    no_to = {**cfg, "to": []}
    assert run_mail_step(config=no_to, smtp=smtp, expand=str, stdout=out, stderr=err) == 1
    assert b"no valid recipients" in err.getvalue()
    err = io.BytesIO()
    assert run_mail_step(config=cfg, smtp=None, expand=str, stdout=out, stderr=err) == 1
    assert b"no SMTP server configured" in err.getvalue()


# --------------------------------------------------------------------------- through dagloop start


def _alert_dag(port: int, *, command: str) -> str:
    return f"""
smtp:
  host: 127.0.0.1
  port: {port}
  username: ""
  password: "${{SMTP_PASSWORD}}"
errorMail:
  from: dagloop@example.com
  to: ops@example.com
  prefix: "[ERROR]"
  attachLogs: true
mailOn:
  failure: true
steps:
  - name: work
    command: {command}
"""


def test_dagloop_start_mails_on_failure_and_keeps_the_run_status(
    start_smtp: Callable[..., SmtpServer], dagu_env: dict[str, str]
) -> None:
    server = start_smtp()
    dags = Path(dagu_env["DAGU_HOME"]) / "dags"
    (dags / "alerting.yaml").write_text(_alert_dag(server.port, command="echo boom >&2; exit 3"))
    code, out, err = run_cli("start", "--json", "alerting", env=dagu_env)
    assert code == 1, err
    details = json.loads(out.strip().splitlines()[-1])
    assert details["statusLabel"] == "failed"
    msg = server.inbox.only()
    assert msg["Subject"] == "[ERROR] alerting (failed)"
    assert "boom" in msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]


def test_mail_server_down_is_a_note_on_the_run_not_a_status_change(
    dagu_env: dict[str, str],
) -> None:
    port = closed_port()
    dags = Path(dagu_env["DAGU_HOME"]) / "dags"
    (dags / "alerting.yaml").write_text(_alert_dag(port, command="exit 1"))
    code, _, _ = run_cli("start", "-q", "alerting", env=dagu_env)
    assert code == 1
    code, out, _ = run_cli("status", "--json", "alerting", env=dagu_env)
    details = json.loads(out)
    assert details["statusLabel"] == "failed"
    assert any("connection refused" in note.lower() for note in details["notes"]), details["notes"]
