"""Secret-named params: stored masked, restored from a hand-over or the DAG defaults
(controller.engine.runparams, issue 8 #28); the ENOSPC wording of controller.diskfull."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from controller.diskfull import describe_os_error, mentions_enospc
from controller.engine.runparams import (
    hand_over,
    is_masked,
    mask_params,
    secret_values,
    take_handed_over,
    unmask_params,
)

PATTERNS = ("*PASSWORD*", "*TOKEN*", "*KEY*", "*SECRET*")


def test_secret_named_params_are_masked_and_others_kept() -> None:
    pairs = [("db_password", "hunter22"), ("REGION", "eu"), ("API_KEY", ""), ("1", "x")]
    stored = mask_params(pairs, PATTERNS)
    assert stored == ["db_password=*****", "REGION=eu", "API_KEY=", "1=x"]
    assert [is_masked(s) for s in stored] == [True, False, False, False]
    assert secret_values(pairs, PATTERNS) == {"db_password": "hunter22"}


def test_masked_values_come_back_from_the_hand_over_then_the_defaults() -> None:
    stored = ["DB_PASSWORD=*****", "TOKEN=*****", "OTHER_TOKEN=*****", "N=1"]
    defaults = [("DB_PASSWORD", "`cat pw`"), ("TOKEN", "t-default"), ("N", "0")]
    assert unmask_params(stored, defaults=defaults, handed_over={"TOKEN": "given"}) == [
        ("DB_PASSWORD", "`cat pw`"),
        ("TOKEN", "given"),
        ("OTHER_TOKEN", ""),
        ("N", "1"),
    ]


def test_hand_over_is_0600_read_once_and_exclusive(tmp_path: Path) -> None:
    hand_over(tmp_path, "d/x", "r1", {"DB_PASSWORD": "s3cret!"})
    (path,) = (tmp_path / "handover").iterdir()
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        hand_over(tmp_path, "d/x", "r1", {"DB_PASSWORD": "other"})
    assert take_handed_over(tmp_path, "d/x", "r1") == {"DB_PASSWORD": "s3cret!"}
    assert take_handed_over(tmp_path, "d/x", "r1") == {}
    hand_over(tmp_path, "d", "r2", {})
    assert not list((tmp_path / "handover").iterdir())


def test_os_errors_are_one_line_with_path_and_errno() -> None:
    exc = OSError(errno.ENOSPC, "No space left on device")
    text = describe_os_error(exc, Path("/logs/run.log"))
    assert text == "/logs/run.log: No space left on device (ENOSPC, errno 28)"
    assert mentions_enospc(text) and "\n" not in text
    assert not mentions_enospc(describe_os_error(OSError(errno.EACCES, "Permission denied")))
