"""`controller.engine.executors.jq`: gojq's JSON format and the step's exit codes (Dagu 1.30.2
observed)."""

from __future__ import annotations

import io
import shutil

import pytest

from controller.engine.executors.jq import encode_gojq, run_jq_step


def test_encode_matches_gojq_format() -> None:
    value: dict[str, object] = {
        "z": "<a&b>",
        "a": [1.0, 2.5, 1e16, 1e-7, 1e21, None, True, {}],
        "m": {"y": 1},
    }
    assert encode_gojq(value) == (
        '{\n    "a": [\n        1,\n        2.5,\n        10000000000000000,\n        1e-7,\n'
        "        1e+21,\n        null,\n        true,\n        {}\n    ],\n"
        '    "m": {\n        "y": 1\n    },\n    "z": "\\u003ca\\u0026b\\u003e"\n}'
    )
    assert encode_gojq({"k": [1, 2.0]}, indent=None) == '{"k":[1,2]}'


def _run(query: str, script: str, raw: bool = False) -> tuple[int, str]:
    out, err = io.BytesIO(), io.BytesIO()
    code = run_jq_step(
        command=[query] if query else [],
        script=script,
        config={"raw": raw},
        expand=lambda text: text,
        stdout=out,
        stderr=err,
        timeout_seconds=10,
    )
    return code, out.getvalue().decode()


@pytest.mark.skipif(shutil.which("jq") is None, reason="no jq program")
def test_step_exit_codes() -> None:
    assert _run(".[]", '["t\\tx", 3.0]', raw=True) == (0, "t\tx\n3\n")
    assert _run(".a | .b", '{"a": "s"}') == (0, "")  # runtime error: still succeeds
    assert _run(".a |||", '{"a": 1}')[0] == 1  # does not compile
    assert _run(".", "not json")[0] == 1
    assert _run("", '{"a": 1}') == (0, "")


@pytest.mark.skipif(shutil.which("jq") is None, reason="no jq program")
def test_raw_null_prints_an_empty_line() -> None:
    # Only a top-level null: inside a value it stays `null`, and without raw it is `null`.
    assert _run(".missing, [null]", "{}", raw=True) == (0, "\n[null]\n")
    assert _run(".missing", "{}") == (0, "null\n")


@pytest.mark.skipif(shutil.which("jq") is None, reason="no jq program")
def test_undefined_name_prints_nothing_and_succeeds() -> None:
    # gojq in Dagu 1.30.2: a filter that parses but names an unknown function or variable
    # (keys_unsorted among them) prints nothing, even before it, and the step succeeds.
    assert _run(".a, toarray", '{"a": 1}') == (0, "")
    assert _run(".a, $nope", '{"a": 1}') == (0, "")
    assert _run(".a, (.a | keys_unsorted)", '{"a": 1}') == (0, "")


@pytest.mark.skipif(shutil.which("jq") is None, reason="no jq program")
def test_objects_are_iterated_in_key_order() -> None:
    doc = '{"b": 2, "a": 1}'
    assert _run("[.[]], tojson, (to_entries | map(.key))", doc, raw=True) == (
        0,
        '[1,2]\n{"a":1,"b":2}\n["a","b"]\n',
    )
