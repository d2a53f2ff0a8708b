"""Every YAML form of the P0/P1 fields normalises to one canonical shape (model.spec + loader).

Reads tests/data/valid/*.yaml and small inline documents; asserts the canonical values
the runner and the controller rely on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from model.loader import Dag, DagLoadError, load_dag, load_dag_text, resolve_params
from model.spec import check_cron, split_cron, validate_name

VALID = Path(__file__).resolve().parent.parent / "data" / "valid"


def _load(text: str) -> Dag:
    return load_dag_text(text, file="t.yaml", location=Path("/tmp/t.yaml"))


@pytest.mark.parametrize("path", sorted(VALID.glob("*.yaml")), ids=lambda p: p.name)
def test_valid_files_load(path: Path) -> None:
    assert load_dag(path).spec.steps


def test_all_forms_normalise() -> None:
    dag = load_dag(VALID / "all_forms.yaml")
    spec = dag.spec
    assert dag.name == "all_forms"
    assert spec.tags == ["etl", "nightly"]
    assert spec.params == [(None, "first"), (None, "second arg"), ("MODE", "fast")]
    assert spec.env == [("A", "1"), ("B", "${A}-2")]
    assert spec.schedule.start == ["0 1 * * *", "CRON_TZ=Europe/Paris 30 6 * * 1-5"]
    assert [c.condition for c in spec.preconditions] == ["test -d /tmp"]
    names = [s.name for s in spec.steps]
    assert names == ["cmd_1", "cmd_2", "cmd_3", "join", "report", "child", "fetch", "legacy"]
    depends = {s.name: s.depends for s in spec.steps}
    # Chain mode: a nested list is a parallel group; the next step waits for all of it.
    assert depends == {
        "cmd_1": [],
        "cmd_2": ["cmd_1"],
        "cmd_3": ["cmd_1"],
        "join": ["cmd_2", "cmd_3"],
        "report": ["join"],
        "child": ["report"],
        "fetch": ["child"],
        "legacy": ["join"],
    }
    join = dag.step("join")
    assert join.command == ["echo one", "echo two"]
    assert join.output is not None and join.output.name == "JOINED"
    assert [(c.condition, c.expected, c.negate) for c in join.preconditions] == [
        ("`date +%Y`", "re:^20", False),
        ("test -d /tmp", None, False),
    ]
    assert join.continue_on.failure and not join.continue_on.skipped
    assert join.retry_policy is not None
    assert (join.retry_policy.limit, join.retry_policy.backoff) == (2, 2.0)
    assert join.retry_policy.exit_code == [1]
    assert join.signal_on_stop == "SIGINT"
    report = dag.step("report")
    assert report.script == "echo report\n"
    assert report.output is not None
    assert (report.output.name, report.output.key) == ("REPORT", "report")
    assert report.continue_on.exit_code == [3]
    assert report.continue_on.output == ["re:^warn"]
    assert report.continue_on.mark_success
    assert report.repeat_policy is not None and report.repeat_policy.repeat == "until"
    assert report.env == [("C", "3")]
    assert report.working_dir == "/tmp"  # `dir` alias
    child = dag.step("child")
    assert (child.call, child.executor_type) == ("child", "dag")  # `run` alias
    assert dag.step("fetch").executor_type == "http"  # type + config
    assert dag.step("legacy").executor_type == "command"  # executor object
    handlers = {event: step.name for event, step in spec.handler_on.items()}
    assert handlers == {
        "success": "onSuccess",
        "failure": "onFailure",
        "abort": "onCancel",  # `cancel` is the deprecated alias of `abort`
        "exit": "onExit",
    }
    sub = dag.local_dags["child"]
    assert sub.spec.params == [("X", "0")]
    assert [(s.name, s.depends) for s in sub.spec.steps] == [("extract", []), ("load", ["extract"])]


def test_graph_mode_and_schedule_map() -> None:
    spec = load_dag(VALID / "graph_map_schedule.yaml").spec
    assert [(s.name, s.depends) for s in spec.steps] == [("a", []), ("b", []), ("c", ["a", "b"])]
    assert spec.schedule.start == ["0 8 * * *"]
    assert spec.schedule.stop == ["0 18 * * *"]
    assert spec.schedule.restart == ["0 12 * * *"]
    assert spec.params == [("DATE", "2024-01-01"), ("N", "3")]


def test_p2_fields_are_kept_and_reported_unsupported() -> None:
    dag = load_dag(VALID / "p2_fields.yaml")
    assert dag.spec.container == {"image": "alpine"}
    assert dag.spec.unsupported_features() == ["container", "ssh", "otel"]
    assert dag.step("in-docker").unsupported_features() == ["executor type 'docker'"]
    assert dag.step("mail").unsupported_features() == []
    assert dag.spec.error_mail is not None and dag.spec.error_mail.to == ["b@example.com"]
    assert dag.spec.smtp is not None and dag.spec.smtp.port == "25"


@pytest.mark.parametrize(
    ("yaml_params", "expected"),
    [
        ("params: a b", [(None, "a"), (None, "b")]),
        ("params: [x, K=v]", [(None, "x"), ("K", "v")]),
        ("params:\n  - A: 1\n  - B: [1, 2]", [("A", "1"), ("B", "[1,2]")]),
        ("params: {A: true, B: null}", [("A", "true"), ("B", "")]),
        ("params:\n  schema: s.json\n  values: {A: 1}", [("A", "1")]),
    ],
)
def test_params_forms(yaml_params: str, expected: list[tuple[str | None, str]]) -> None:
    assert _load(f"{yaml_params}\nsteps: [echo]\n").spec.params == expected


def test_param_overrides_by_name_and_position() -> None:
    defaults = [(None, "a"), ("MODE", "slow"), (None, "c")]
    # a positional override is named by its place among the overrides (Dagu 1.30.2:
    # `1=a MODE=fast 3=c 2=x`)
    assert resolve_params(defaults, [("MODE", "fast"), (None, "x")]) == [
        ("1", "a"),
        ("MODE", "fast"),
        ("3", "c"),
        ("2", "x"),
    ]
    assert resolve_params(defaults, [(None, "x")]) == [("1", "x"), ("MODE", "slow"), ("3", "c")]
    # never onto a named default: `NAME=World 1=NAME`
    assert resolve_params([("NAME", "World")], [(None, "NAME")]) == [
        ("NAME", "World"),
        ("1", "NAME"),
    ]


@pytest.mark.parametrize(
    "yaml_env",
    ["env: {A: 1, B: x}", "env:\n  - A: 1\n  - B: x", "env: [A=1, B=x]"],
)
def test_env_forms(yaml_env: str) -> None:
    assert _load(f"{yaml_env}\nsteps: [echo]\n").spec.env == [("A", "1"), ("B", "x")]


@pytest.mark.parametrize(
    ("yaml_depends", "expected"),
    [("depends: a", ["a"]), ("depends: [a]", ["a"]), ("depends: []", []), ("depends:", [])],
)
def test_depends_forms(yaml_depends: str, expected: list[str]) -> None:
    text = f"steps:\n  - name: a\n    command: x\n  - name: b\n    command: y\n    {yaml_depends}\n"
    assert _load(text).step("b").depends == expected


def test_step_depends_on_an_id() -> None:
    dag = _load(
        "type: graph\nsteps:\n  - name: extract\n    id: ex\n    command: x\n"
        "  - name: load\n    command: y\n    depends: ex\n"
    )
    assert dag.step("load").depends == ["ex"]
    assert dag.step("ex").name == "extract"


@pytest.mark.parametrize(
    "call",
    ["sub", "sub.yaml", "dir/sub.yml", "${SUB_DAG}"],
)
def test_call_targets_that_could_be_files_are_allowed(call: str) -> None:
    assert _load(f"steps:\n  - call: '{call}'\n").spec.steps[0].call == call


def test_repeat_policy_legacy_forms() -> None:
    dag = _load(
        "steps:\n"
        "  - name: a\n    command: x\n    repeatPolicy: {repeat: true, intervalSec: 1}\n"
        "  - name: b\n    command: x\n    repeatPolicy: {condition: '$X', expected: ok}\n"
        "  - name: c\n    command: x\n    repeatPolicy: {exitCode: [1]}\n"
    )
    modes = [s.repeat_policy.repeat if s.repeat_policy else None for s in dag.spec.steps]
    assert modes == ["while", "until", "while"]


@pytest.mark.parametrize(
    ("expression", "ok"),
    [
        ("0 1 * * *", True),
        ("*/5 * * * 1-5", True),
        ("CRON_TZ=Asia/Tokyo 0 9 * * *", True),
        ("@daily", False),
        ("0 1 * *", False),
        ("0 0 1 * * *", False),
        ("0 24 * * *", False),
        ("CRON_TZ=No/Where 0 9 * * *", False),
    ],
)
def test_check_cron(expression: str, ok: bool) -> None:
    assert (check_cron(expression) is None) is ok


def test_split_cron() -> None:
    assert split_cron("CRON_TZ=UTC  0 1 * * *") == ("UTC", "0 1 * * *")
    assert split_cron("0 1 * * *") == (None, "0 1 * * *")


@pytest.mark.parametrize(
    ("name", "ok"),
    [("etl.daily-v2_x", True), ("a" * 40, True), ("a" * 41, False), ("a b", False), ("é", False)],
)
def test_validate_name(name: str, ok: bool) -> None:
    assert (validate_name(name) is None) is ok


def test_duplicate_names_do_not_produce_a_phantom_self_dependency() -> None:
    with pytest.raises(DagLoadError) as info:
        _load("steps:\n  - name: a\n    command: x\n  - name: a\n    command: y\n")
    assert [e.message for e in info.value.errors] == ["duplicate step name 'a'"]


def test_unnamed_steps_named_by_kind_and_position() -> None:
    dag = _load(
        "type: graph\n"
        "steps:\n"
        "  - script: echo s\n"
        "  - {call: child, parallel: {items: [a]}}\n"
        "  - call: child\n"
        "  - {executor: jq, command: .a, script: '{}'}\n"
        "  - {container: {image: alpine}, command: echo d}\n"
        "  - {executor: {type: http}, command: GET http://x/}\n"
        "  - echo c\n"
        "---\n"
        "name: child\n"
        "steps: [echo child]\n"
    )
    assert [s.name for s in dag.spec.steps] == [
        "script_1",
        "parallel_2",
        "dag_3",
        "jq_4",
        "docker_5",
        "http_6",
        "cmd_7",
    ]


def test_automatic_name_taken_by_user_step_is_a_duplicate() -> None:
    with pytest.raises(DagLoadError, match="duplicate step name 'cmd_1'"):
        _load("steps:\n  - echo a\n  - {name: cmd_1, command: echo b}\n")


def test_repeat_policy_fractions_are_truncated() -> None:
    dag = _load(
        "steps:\n  - name: a\n    command: echo\n"
        "    repeatPolicy: {repeat: true, limit: 2.7, intervalSec: 1.9}\n"
    )
    policy = dag.step("a").repeat_policy
    assert policy is not None
    assert (policy.limit, policy.interval_sec) == (2, 1)


@pytest.mark.parametrize("field", ["limit", "intervalSec"])
@pytest.mark.parametrize("number", ["0.1", "1.0"])
def test_retry_policy_refuses_floats(field: str, number: str) -> None:
    other = "intervalSec: 0" if field == "limit" else "limit: 1"
    policy = f"retryPolicy: {{{field}: {number}, {other}}}"
    text = f"steps:\n  - name: a\n    command: echo\n    {policy}\n"
    with pytest.raises(DagLoadError, match="invalid type: float64"):
        _load(text)


def test_jq_step_with_several_commands_is_refused() -> None:
    with pytest.raises(DagLoadError, match='"jq" only supports a single command'):
        _load("steps:\n  - {name: j, executor: jq, command: [.a, .b], script: '{}'}\n")


@pytest.mark.parametrize("field", ["limit", "intervalSec"])
def test_repeat_policy_refuses_text_numbers(field: str) -> None:
    policy = f"repeatPolicy: {{repeat: true, {field}: '1'}}"
    text = f"steps:\n  - name: a\n    command: echo\n    {policy}\n"
    with pytest.raises(DagLoadError, match="unconvertible type 'string'"):
        _load(text)
