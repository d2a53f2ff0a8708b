"""The dashboard's line diff (a run's spec against the current file), run by node."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.helpers import REPO_ROOT

APP_JS = REPO_ROOT / "api" / "static" / "app.js"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_line_diff_marks_removed_added_and_kept_lines() -> None:
    source = APP_JS.read_text()
    match = re.search(r"  function lineDiff\(a, b\) \{.*?\n  \}\n", source, re.S)
    assert match is not None
    script = match.group(0) + "console.log(JSON.stringify(lineDiff('a\\nb\\nc', 'a\\nx\\nc\\nd')));"
    out = subprocess.run(
        ["node", "-e", script], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert json.loads(out) == [
        ["same", "a"],
        ["del", "b"],
        ["add", "x"],
        ["same", "c"],
        ["add", "d"],
    ]
