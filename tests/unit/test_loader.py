"""`dagloop validate` and the loader on the malformed corpus, limits, base.yaml and names.

Most cases run the CLI in-process (`controller.cli.main`) for speed; a few run it as a
real subprocess to prove the exit code and the absence of tracebacks end to end.
"""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from controller.cli import main
from model.loader import DagLoadError, load_base, load_dag, load_dag_text
from tests.helpers import dagu_home, run_cli

DATA = Path(__file__).resolve().parent.parent / "data"
MALFORMED = DATA / "malformed"
EXPECTED: dict[str, dict[str, object]] = yaml.safe_load(
    (MALFORMED / "expected.yaml").read_text(encoding="utf-8")
)


def _expected_prefix(path: Path, line: object, field: object) -> str:
    return f"{path}:{line}: {field}: " if field else f"{path}:{line}: "


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """In-process runs read DAGU_HOME from os.environ: point it at tmp_path."""
    env = dagu_home(tmp_path)
    for key in [k for k in os.environ if k.startswith("DAGU_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DAGU_HOME", env["DAGU_HOME"])
    return Path(env["DAGU_HOME"])


def test_corpus_is_big_enough_and_fully_described() -> None:
    files = sorted(p.name for p in MALFORMED.glob("*.yaml") if p.name != "expected.yaml")
    assert len(files) >= 40
    assert files == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_file_reports_its_one_error(
    name: str, isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = MALFORMED / name
    expected = EXPECTED[name]
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in out + err
    lines = out.splitlines()
    assert len(lines) == 1, lines
    prefix = _expected_prefix(path, expected["line"], expected["field"])
    assert lines[0].startswith(prefix), (lines[0], prefix)
    assert str(expected["message"]) in lines[0][len(prefix) :]


@pytest.mark.parametrize(
    "name", ["cycle_graph.yaml", "alias_bomb.yaml", "not_utf8.yaml", "invalid_yaml_syntax.yaml"]
)
def test_malformed_file_in_a_real_subprocess(name: str, tmp_path: Path) -> None:
    path = MALFORMED / name
    expected = EXPECTED[name]
    code, out, err = run_cli("validate", str(path), env=dagu_home(tmp_path))
    assert code == 1, err
    assert "Traceback" not in out + err
    prefix = _expected_prefix(path, expected["line"], expected["field"])
    assert out.startswith(prefix) and str(expected["message"]) in out


def test_three_mistakes_give_three_lines(tmp_path: Path) -> None:
    dag = tmp_path / "three.yaml"
    dag.write_text(
        "retries: 2\n"  # unknown key
        "steps:\n"
        "  - name: a\n"
        "    command: echo a\n"
        "    timeoutSec: soon\n"  # wrong type
        "  - name: b\n"
        "    command: echo b\n"
        "    depends: c\n",  # unknown step
        encoding="utf-8",
    )
    code, out, err = run_cli("validate", str(dag), env=dagu_home(tmp_path))
    assert code == 1
    assert "Traceback" not in out + err
    assert out.splitlines() == [
        f"{dag}:1: retries: unknown key 'retries'",
        f"{dag}:5: steps[0].timeoutSec: expected a number, got text 'soon'",
        f"{dag}:8: steps[1].depends: unknown step 'c'",
    ]


def test_validate_json_lists_every_file(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("steps:\n  - echo hi\n", encoding="utf-8")
    bad = MALFORMED / "unknown_depends.yaml"
    code = main(["validate", "--json", str(good), str(bad)])
    payload = json.loads(capsys.readouterr().out)
    assert code == 1
    assert payload["files"][0] == {"file": str(good), "valid": True, "errors": []}
    assert payload["files"][1]["valid"] is False
    assert payload["files"][1]["errors"] == [
        {
            "file": str(bad),
            "line": 7,
            "field": "steps[1].depends",
            "message": "unknown step 'transform'",
        }
    ]


def test_validate_exit_codes_for_usage_errors(tmp_path: Path) -> None:
    env = dagu_home(tmp_path)
    code, out, err = run_cli("validate", env=env)
    assert (code, out) == (2, "")
    assert err.strip() == "dagloop validate: no DAG given (usage: dagloop validate FILE|NAME ...)"
    code, out, err = run_cli("validate", str(tmp_path / "missing.yaml"), env=env)
    assert code == 2
    assert err.strip() == f"dagloop validate: no such file or DAG: {tmp_path / 'missing.yaml'}"


def test_validate_finds_a_name_in_the_dags_dir_and_merges_base(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (isolated_home / "dags" / "nightly.yml").write_text("steps:\n  - echo hi\n", encoding="utf-8")
    assert main(["validate", "nightly"]) == 0
    # A broken base.yaml is reported once and fails the run.
    (isolated_home / "base.yaml").write_text("timeoutSec: never\n", encoding="utf-8")
    assert main(["validate", "nightly"]) == 1
    out = capsys.readouterr().out
    assert out.strip() == (
        f"{isolated_home / 'base.yaml'}:1: timeoutSec: expected a number, got text 'never'"
    )


def test_validate_checks_base_yaml_as_a_base_config(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("histRetentionDays: 3\nenv:\n  - A: 1\n", encoding="utf-8")
    assert main(["validate", str(base)]) == 0  # no steps needed in a base config
    base.write_text("histRetentionDays: 3\nretention: 4\n", encoding="utf-8")
    assert main(["validate", str(base)]) == 1
    assert capsys.readouterr().out.strip() == f"{base}:2: retention: unknown key 'retention'"


def test_ten_megabyte_file_is_refused_quickly(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("steps:\n" + "  - echo hello world\n" * 500_000, encoding="utf-8")
    assert big.stat().st_size > 10_000_000
    started = time.perf_counter()
    with pytest.raises(DagLoadError) as info:
        load_dag(big)
    assert time.perf_counter() - started < 0.5
    assert [str(e) for e in info.value.errors] == [
        f"{big}: file is larger than the 1048576 byte limit"
    ]


def test_billion_laughs_is_refused_in_bounded_time_and_memory() -> None:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    previous = "a"
    for name in "bcdefghij":
        refs = ",".join([f"*{previous}"] * 10)
        text += f"{name}: &{name} [{refs}]\n"
        previous = name
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(DagLoadError) as info:
            load_dag_text(text, file="lol.yaml")
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 20 * 1024 * 1024
    assert "document too large after alias expansion" in info.value.errors[0].message


def test_deep_dependency_chain_does_not_hit_the_recursion_limit() -> None:
    n = 3000
    steps = "".join(
        f"  - name: s{i}\n    command: 'true'\n    depends: s{i + 1}\n" for i in range(n)
    )
    text = f"type: graph\nsteps:\n{steps}  - name: s{n}\n    command: 'true'\n    depends: s7\n"
    with pytest.raises(DagLoadError) as info:
        load_dag_text(text, location=Path("/tmp/deep.yaml"))
    (error,) = info.value.errors
    assert error.message.startswith("dependency cycle: s7 -> s8 -> s9")


def test_base_yaml_is_merged_as_dagu_does(tmp_path: Path) -> None:
    base_file = tmp_path / "base.yaml"
    base_file.write_text(
        "env:\n  - BASE: b\ntags: [base]\nhistRetentionDays: 7\n"
        "handlerOn:\n  failure:\n    command: echo base failure\n"
        "mailOn:\n  failure: true\n  success: true\n",
        encoding="utf-8",
    )
    dag_file = tmp_path / "etl.yaml"
    dag_file.write_text(
        "env:\n  A: ${BASE}-x\ntags: mine\nmailOn:\n  failure: true\n"
        "handlerOn:\n  exit:\n    command: echo bye\nsteps:\n  - echo hi\n",
        encoding="utf-8",
    )
    dag = load_dag(dag_file, base=load_base(base_file))
    assert dag.name == "etl"
    assert dag.spec.env == [("BASE", "b"), ("A", "${BASE}-x")]  # appended, base first
    assert dag.spec.tags == ["base", "mine"]
    assert dag.spec.hist_retention_days == 7
    assert dag.spec.mail_on is not None
    assert (dag.spec.mail_on.failure, dag.spec.mail_on.success) == (True, False)  # replaced
    assert [event for event, _ in dag.spec.handler_on.items()] == ["failure", "exit"]


@pytest.mark.parametrize(
    ("dag_line", "expected"),
    [("", "merged"), ("logOutput: null\n", "merged"), ("logOutput: ''\n", "separate")],
)
def test_base_yaml_log_output_is_kept_unless_the_dag_sets_it(
    tmp_path: Path, dag_line: str, expected: str
) -> None:
    # Dagu 1.30.2: null is "not set" (base.yaml's stays); "" is `separate` and overrides it.
    dag_file = tmp_path / "d.yaml"
    dag_file.write_text(f"{dag_line}steps:\n  - echo hi\n", encoding="utf-8")
    dag = load_dag(dag_file, base={"logOutput": "merged"})
    assert dag.spec.log_output == expected


def test_step_log_output_overrides_the_dags_both_ways(tmp_path: Path) -> None:
    # As Dagu 1.30.2 reads it: trimmed, case-insensitive; "" is separate, null inherits.
    dag_file = tmp_path / "d.yaml"
    dag_file.write_text(
        "logOutput: MERGED\nsteps:\n  - {command: echo, logOutput: ' Separate '}\n"
        "  - {command: echo, logOutput: ''}\n  - {command: echo, logOutput: null}\n"
        "  - {command: echo, logOutput: merged}\nhandlerOn:\n  exit: {command: echo}\n",
        encoding="utf-8",
    )
    spec = load_dag(dag_file).spec
    assert [s.log_output for s in spec.steps] == ["separate", "separate", None, "merged"]
    assert [s.merges_logs(spec.log_output) for s in spec.steps] == [False, False, True, True]
    assert spec.handler_on.exit is not None and spec.handler_on.exit.merges_logs(spec.log_output)


def test_error_in_a_field_inherited_from_base_names_that_field(tmp_path: Path) -> None:
    dag_file = tmp_path / "d.yaml"
    dag_file.write_text("steps:\n  - echo hi\n", encoding="utf-8")
    with pytest.raises(DagLoadError) as info:
        load_dag(dag_file, base={"maxActiveSteps": -3})
    assert [e.field for e in info.value.errors] == ["maxActiveSteps"]


def test_a_dag_without_steps_is_valid_as_in_dagu(tmp_path: Path) -> None:
    dag_file = tmp_path / "handlers_only.yaml"
    dag_file.write_text("handlerOn:\n  exit:\n    command: echo bye\n", encoding="utf-8")
    dag = load_dag(dag_file)
    assert dag.spec.steps == []
    assert [event for event, _ in dag.spec.handler_on.items()] == ["exit"]


def test_empty_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DagLoadError) as info:
        load_dag(empty)
    assert [str(e) for e in info.value.errors] == [
        f"{empty}:1: steps: at least one step is required"
    ]


def test_a_bad_step_does_not_hide_errors_of_the_other_steps() -> None:
    text = (
        "type: graph\nsteps:\n"
        "  - name: a\n    command: echo\n    timeoutSec: x\n"
        "  - name: b\n    command: echo\n    depends: [a, zz]\n"
    )
    with pytest.raises(DagLoadError) as info:
        load_dag_text(text, location=Path("/tmp/x.yaml"))
    # `a` is invalid but still known as a step name; only `zz` is unknown.
    assert [(e.line, e.field) for e in info.value.errors] == [
        (5, "steps[0].timeoutSec"),
        (8, "steps[1].depends"),
    ]


EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def test_examples_directory_validates(tmp_path: Path) -> None:
    files = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))
    dags = [f for f in files if not f.endswith("base.yaml")]
    assert len(dags) >= 8
    env = dagu_home(tmp_path)
    code, out, err = run_cli("validate", "--base", str(EXAMPLES / "base.yaml"), *files, env=env)
    assert (code, out) == (0, ""), out + err


def test_examples_cover_the_features_they_advertise() -> None:
    base = load_base(EXAMPLES / "base.yaml")
    loaded = {p.stem: load_dag(p, base=base) for p in EXAMPLES.glob("*.yaml") if p.stem != "base"}
    etl = loaded["etl_chain"].spec
    assert [s.depends for s in etl.steps][1:] == [["extract"], ["count"], ["transform"], ["load"]]
    assert all(s.output is not None for s in etl.steps[:4])
    assert loaded["fan_out_fan_in"].step("join").depends == ["shard-a", "shard-b", "shard-c"]
    retry = loaded["retry_backoff"].step("flaky").retry_policy
    assert retry is not None and retry.backoff == 2.0
    assert loaded["preconditions"].spec.preconditions
    assert {e for e, _ in loaded["handlers"].spec.handler_on.items()} >= {
        "success",
        "failure",
        "exit",
    }
    assert loaded["params"].spec.params == [(None, "2024-01-01"), ("REGION", "eu"), ("LIMIT", "3")]
    assert loaded["scheduled_report"].spec.schedule.start
    assert "greet" in loaded["sub_dag_call"].local_dags
    assert loaded["continue_on"].step("nothing-new").continue_on.exit_code == [3]
    assert loaded["etl_chain"].spec.env[0] == ("OUT_DIR", "/tmp/dagloop-examples")  # from base
