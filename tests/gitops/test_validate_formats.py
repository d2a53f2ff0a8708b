"""`dagloop validate --format json|github` as a DAG repository's CI runs it (real CLI), and the
pre-commit hook definition at the repository root."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from controller.commands.validate import github_annotation
from model.loader import LoadError
from tests.helpers import REPO_ROOT, run_cli


def test_github_format_prints_one_annotation_per_problem_with_file_and_line(
    tmp_path: Path, dagu_env: dict[str, str]
) -> None:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "ok.yaml").write_text("steps:\n  - name: a\n    command: 'true'\n")
    (tmp_path / "dags" / "bad.yaml").write_text("steps:\n  - name: a\n    command: 1\n")
    code, out, err = run_cli(
        "validate",
        "--format",
        "github",
        "dags/ok.yaml",
        "dags/bad.yaml",
        env=dagu_env,
        cwd=tmp_path,
    )
    assert code == 1, err
    assert out.splitlines() == [
        "::error file=dags/bad.yaml,line=3,title=steps[0].command::"
        "expected a string or a list of strings"
    ]


def test_json_format_is_the_json_document(tmp_path: Path, dagu_env: dict[str, str]) -> None:
    (tmp_path / "bad.yaml").write_text("steps: [\n")
    code, out, _ = run_cli("validate", "--format", "json", "bad.yaml", env=dagu_env, cwd=tmp_path)
    assert code == 1
    (doc,) = json.loads(out)["files"]
    assert doc["file"] == "bad.yaml" and doc["valid"] is False and doc["errors"]


def test_annotation_escapes_what_github_would_misread() -> None:
    error = LoadError("a,b:c.yaml", 2, "env", "50% bad\nsecond line")
    assert github_annotation(error) == (
        "::error file=a%2Cb%3Ac.yaml,line=2,title=env::50%25 bad%0Asecond line"
    )


def test_pre_commit_hook_runs_dagloop_validate_on_yaml_files() -> None:
    hooks = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())
    (hook,) = hooks
    assert hook["id"] == "dagloop-validate" and hook["entry"] == "dagloop validate"
    assert hook["language"] == "python"
