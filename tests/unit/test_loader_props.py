"""Property tests: whatever YAML (or text) the loader is given, it never crashes.

Every outcome is either a loaded `Dag` or a `DagLoadError` with at least one error, each
error one line with a field path and a message.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.loader import Dag, DagLoadError, _DagYamlLoader, load_dag_text

TOP_KEYS = [
    "name", "description", "tags", "type", "schedule", "params", "env", "dotenv", "steps",
    "timeoutSec", "maxActiveRuns", "maxActiveSteps", "precondition", "preconditions",
    "handlerOn", "mailOn", "smtp", "histRetentionDays", "workingDir", "shell", "queue",
    "logOutput", "container", "bogus",
]  # fmt: skip
STEP_KEYS = [
    "name", "id", "command", "script", "depends", "output", "env", "params", "continueOn",
    "retryPolicy", "repeatPolicy", "preconditions", "precondition", "timeoutSec",
    "signalOnStop", "call", "run", "dir", "workingDir", "parallel", "executor", "type",
    "config", "shell", "limit", "intervalSec", "backoff", "exitCode", "repeat", "condition",
    "expected", "failure", "skipped", "success", "exit", "start", "stop", "key", "items",
]  # fmt: skip
WORDS = ["a", "b", "echo hi", "0 1 * * *", "* * *", "SIGTERM", "chain", "graph", "true", "-1"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(max_size=12),
    st.dates(),
    st.datetimes(timezones=st.just(datetime.UTC)),
    st.binary(max_size=8),
)
keys = st.one_of(st.sampled_from(TOP_KEYS + STEP_KEYS), st.text(max_size=6), st.integers())


def _nested(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(keys, inner, max_size=5),
        ),
        max_leaves=25,
    )


documents = st.dictionaries(st.sampled_from(TOP_KEYS), _nested(scalars), max_size=8)
steps_docs = st.builds(
    lambda doc, steps: {**doc, "steps": steps},
    st.dictionaries(st.sampled_from(TOP_KEYS), _nested(scalars), max_size=4),
    st.lists(
        st.one_of(
            st.dictionaries(st.sampled_from(STEP_KEYS), _nested(scalars), max_size=6),
            st.sampled_from(WORDS),
            st.lists(st.sampled_from(WORDS), max_size=3),
        ),
        max_size=5,
    ),
)


def _check(text: str) -> None:
    try:
        dag = load_dag_text(text, file="p.yaml", location=Path("/tmp/p.yaml"))
    except DagLoadError as exc:
        assert exc.errors
        for error in exc.errors:
            assert error.file == "p.yaml"
            assert error.message
            assert error.line is None or error.line >= 1
            assert "\n" not in error.field
            assert "\n" not in error.message
        return
    assert isinstance(dag, Dag)
    # A DAG without steps is valid (Dagu 1.30.2); only an empty document is refused. The
    # oracle parses with the loader's own YAML parser: libyaml accepts a tab after `key:`
    # (as Go's yaml does) where PyYAML's pure-Python scanner raises.
    assert dag.spec.steps or yaml.load(text, Loader=_DagYamlLoader)


_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(documents)
def test_random_documents_never_crash(doc: dict[str, Any]) -> None:
    _check(yaml.safe_dump(doc, allow_unicode=True))


@_settings
@given(steps_docs)
def test_random_step_lists_never_crash(doc: dict[str, Any]) -> None:
    _check(yaml.safe_dump(doc, allow_unicode=True))


@_settings
@given(st.lists(documents, min_size=1, max_size=3))
def test_random_multi_document_files_never_crash(docs: list[dict[str, Any]]) -> None:
    _check(yaml.safe_dump_all(docs, allow_unicode=True))


@_settings
@given(st.text(max_size=200))
def test_random_text_never_crashes(text: str) -> None:
    _check(text)


@_settings
@given(
    st.lists(
        st.sampled_from(
            [
                "steps:",
                "  - ",
                "name: a",
                "&x ",
                "*x",
                "[",
                "]",
                "{",
                "}",
                ": ",
                "- ",
                "\n",
                "  ",
                "---\n",
                "? ",
                "!!str ",
                "!!binary ",
                "<<: *x",
                "'",
                '"',
                "#",
                "\t",
                "|\n",
            ]
        ),
        max_size=40,
    )
)
def test_random_yaml_like_fragments_never_crash(parts: list[str]) -> None:
    _check("".join(parts))
