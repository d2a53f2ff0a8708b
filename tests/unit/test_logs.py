"""Log lines: the seed's JSON shape, the text shape, debug source locations, secret redaction."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.logs import (
    RedactingFilter,
    add_secret,
    clear_secrets,
    redact,
    run_log_handler,
    setup_logging,
)

TIME_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
log = logging.getLogger("dagloop.test")


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    clear_secrets()


def capture(log_format: str, debug: bool = False) -> io.StringIO:
    stream = io.StringIO()
    setup_logging(log_format=log_format, debug=debug, stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_line_has_the_seed_shape() -> None:
    stream = capture("json")
    log.info(
        "DAG execution started",
        extra={"dag": "data-pipeline", "run_id": "20240315_120000_abc123"},
    )
    [line] = lines(stream)
    event = json.loads(line)
    assert list(event) == ["time", "level", "msg", "dag", "run_id"]
    assert event["level"] == "INFO"
    assert event["msg"] == "DAG execution started"
    assert event["dag"] == "data-pipeline"
    assert event["run_id"] == "20240315_120000_abc123"
    assert re.fullmatch(TIME_RE, event["time"])
    at = datetime.fromisoformat(event["time"])
    assert at.tzinfo is not None and at.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - at).total_seconds()) < 60


def test_json_line_carries_other_extra_fields_and_null_context_when_about_no_run() -> None:
    stream = capture("json")
    log.warning("retrying", extra={"attempt": 2, "step": "load", "path": Path("/x")})
    event = json.loads(lines(stream)[0])
    assert event["level"] == "WARNING"
    assert event["attempt"] == 2 and event["step"] == "load" and event["path"] == "/x"
    assert event["dag"] is None and event["run_id"] is None and "source" not in event


def test_text_line_shape() -> None:
    stream = capture("text")
    log.info("DAG execution started", extra={"run_id": "r-1", "dag": "data-pipeline"})
    log.info("with spaces", extra={"note": "a b"})
    first, second = lines(stream)
    assert re.fullmatch(
        TIME_RE + r" INFO DAG execution started dag=data-pipeline run_id=r-1", first
    )
    assert second.endswith('INFO with spaces note="a b"')


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_one_line_per_event_even_with_newlines_and_tracebacks(log_format: str) -> None:
    stream = capture(log_format)
    log.info("two\nlines")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed", extra={"dag": "d"})
    out = lines(stream)
    assert len(out) == 2
    assert "RuntimeError: boom" in out[1]
    if log_format == "json":
        assert json.loads(out[1])["error"].startswith("Traceback")


def test_debug_lowers_the_level_and_adds_the_source_location() -> None:
    stream = capture("json", debug=True)
    log.debug("detail")
    event = json.loads(lines(stream)[0])
    assert event["level"] == "DEBUG"
    assert re.fullmatch(r"test_logs\.py:\d+", event["source"])


def test_without_debug_debug_events_are_dropped_and_no_source() -> None:
    stream = capture("text")
    log.debug("detail")
    log.info("shown")
    [line] = lines(stream)
    assert "shown" in line and "source=" not in line


def test_text_debug_has_source_field() -> None:
    stream = capture("text", debug=True)
    log.info("x")
    assert re.search(r" source=test_logs\.py:\d+$", lines(stream)[0])


def test_setup_logging_twice_replaces_its_handler() -> None:
    first = capture("text")
    second = capture("json")
    log.info("once")
    assert first.getvalue() == ""
    assert len(lines(second)) == 1


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_registered_secrets_never_appear(log_format: str) -> None:
    stream = capture(log_format, debug=True)
    add_secret("s3cr3t-value")
    add_secret('quo"te\\secret')
    add_secret("")  # ignored, must not mask everything
    log.info("password is s3cr3t-value", extra={"dag": "d", "token": "s3cr3t-value"})
    log.info("arg %s", 'quo"te\\secret')
    try:
        raise ValueError("bad s3cr3t-value")
    except ValueError:
        log.exception("oops")
    out = stream.getvalue()
    assert "s3cr3t" not in out
    assert 'quo"te' not in out and 'quo\\"te' not in out
    assert out.count("*****") >= 4
    if log_format == "json":
        first = json.loads(lines(stream)[0])
        assert first["msg"] == "password is *****" and first["token"] == "*****"


def test_redact_helper() -> None:
    add_secret("abc123")
    assert redact("x abc123 y abc123") == "x ***** y *****"


def test_redacting_filter_protects_foreign_handlers() -> None:
    add_secret("topsecret")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s %(user)s"))
    handler.addFilter(RedactingFilter())
    other = logging.getLogger("dagloop.test.foreign")
    other.addHandler(handler)
    other.propagate = False
    try:
        other.warning("value=%s", "topsecret", extra={"user": "topsecret"})
    finally:
        other.removeHandler(handler)
        other.propagate = True
    assert stream.getvalue() == "value=***** *****\n"


def test_run_log_handler_writes_the_same_format_to_a_file(tmp_path: Path) -> None:
    capture("json")
    add_secret("pw-in-run")
    path = tmp_path / "logs" / "d" / "run.log"
    handler = run_log_handler(path)
    run_logger = logging.getLogger("dagloop.test.run")
    run_logger.addHandler(handler)
    try:
        run_logger.info("step done pw-in-run", extra={"dag": "d", "run_id": "r"})
    finally:
        run_logger.removeHandler(handler)
        handler.close()
    [line] = path.read_text(encoding="utf-8").splitlines()
    event = json.loads(line)
    assert (event["msg"], event["dag"], event["run_id"]) == ("step done *****", "d", "r")


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="log_format"):
        setup_logging(log_format="xml", debug=False, stream=io.StringIO())
