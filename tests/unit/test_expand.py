"""Pure text rules of the engine: bash substrings and default values of
`controller.engine.expand`, as Dagu 1.30.2 evaluates them (the compat case `substring_expand`
records the same values), the shebang of `controller.engine.command` and the DAG working
directory of `controller.engine.variables`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from controller.engine import expand as ex
from controller.engine.command import shebang
from controller.engine.variables import dag_workdir

WORD = {"WORD": "abcdefghij", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${WORD:0:3}", "abc"),
        ("${WORD:7}", "hij"),
        ("${WORD:2:4}", "cdef"),
        ("${WORD: -3}", "hij"),
        ("${WORD: -3:2}", "hi"),
        ("${WORD:2:-2}", "cdefgh"),
        ("${WORD:20}", ""),
        ("${WORD:8:10}", "ij"),
        ("${WORD: -20}", ""),
        ("${WORD:5:-6}", "fghij"),
        ("${WORD:5:-5}", ""),
        ("${WORD: -3:-5}", "hij"),
        ("x${WORD:1:2}y", "xbcy"),
    ],
)
def test_substring_follows_dagu(text: str, expected: str) -> None:
    assert ex.expand(text, WORD) == expected


def test_colon_dash_is_the_default_operator_not_a_negative_offset() -> None:
    assert ex.expand("${WORD:-3}", WORD) == "abcdefghij"
    assert ex.expand("${EMPTY:-fallback}", WORD) == "fallback"
    assert ex.expand("${NOPE:-fallback}", WORD, keep_unknown=False) == "fallback"
    assert ex.expand("${NOPE:-fallback}", WORD) == "${NOPE:-fallback}"


def test_unknown_variable_with_operator_is_left_or_dropped() -> None:
    assert ex.expand("${NOPE:0:2}", WORD) == "${NOPE:0:2}"
    assert ex.expand("${NOPE:0:2}", WORD, keep_unknown=False) == ""


def test_substring_of_a_step_reference() -> None:
    refs = {"make": {"stdout": "/tmp/logs/make.out"}}
    assert ex.expand("${make.stdout:0:5}", {}, step_refs=refs) == "/tmp/"


@pytest.mark.skipif(shutil.which("jq") is None, reason="no jq program")
def test_an_operator_on_a_json_value_is_part_of_its_jq_filter() -> None:
    # Dagu 1.30.2 hands everything after `${J` to gojq: `.a:1` does not compile (left as
    # written, dropped in env), `.n-1` is a subtraction, `.a // "d"` the alternative operator
    j = {"J": '{"a": "xyz", "n": 5, "z": null}'}
    assert ex.expand("${J.a:1}", j) == "${J.a:1}"
    assert ex.expand("${J.a:1}", j, keep_unknown=False) == ""
    assert ex.expand('${J.n-1} ${J.z // "d"} ${J.a#c}', j, shell_text=True) == "4 d xyz"


@pytest.mark.skipif(shutil.which("jq") is None, reason="no jq program")
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (".list | length", "3"),
        (".items[] | .name", "x"),  # the first result only
        (".list[] | select(. > 1)", "2"),
        ('.list[] | if . == 2 then error("e") else . end', "1"),  # an error after it
        (".o | .[]", "1"),  # gojq iterates an object in key order
        (".o | tojson", '{"a":1,"b":2}'),
        (".o | keys", "[a b]"),
        (".list | map(. * 1000000)", "[1e+06 2e+06 3e+06]"),
        (".s | trim", "s p"),  # gojq builtins jq 1.6 lacks
        (". | length", "5"),
    ],
)
def test_json_filter_takes_the_first_result_go_formatted(path: str, expected: str) -> None:
    value = '{"list":[1,2,3],"items":[{"name":"x"},{"name":"y"}],"o":{"b":2,"a":1},"s":" s p ",'
    value += '"n":null}'
    assert ex.json_path(value, path) == expected


@pytest.mark.skipif(shutil.which("jq") is None, reason="no jq program")
@pytest.mark.parametrize(
    "path",
    [
        ".s | tonumber",  # a runtime error before any result
        ".list |",  # does not parse
        ".list | toarray",  # gojq has no such function
        ".o | keys_unsorted",  # nor this one
        ".list | empty",  # no result
        ".a-b",  # `.a - b`: b is not defined
    ],
)
def test_json_filter_without_a_result_is_unresolved(path: str) -> None:
    assert ex.json_path('{"list":[1],"s":"x","o":{}}', path) is None


def test_json_filter_on_a_value_that_is_not_json_is_unresolved() -> None:
    assert ex.json_path("plain text", ". | length") is None
    assert ex.json_path("NaN", ". | length") is None  # Go's JSON has no NaN


def test_json_filter_without_jq_fails_loudly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ValueError, match="jq program"):
        ex.json_path('{"unique":[1]}', ".unique | length")
    assert ex.json_path('{"unique":[1]}', ".unique[0]") == "1"  # paths need no jq


def test_shell_text_leaves_operators_on_variables_to_the_shell() -> None:
    # Dagu 1.30.2 (observed with `shell: sh`: "Bad substitution"): the step's shell evaluates
    # them, so `${W:5:-6}` fails there as bash fails it; step references are Dagu's own.
    refs = {"make": {"stdout": "/tmp/make.out"}}
    text = "echo ${WORD:1:2} ${#WORD} ${WORD/a/b} ${WORD:+w} ${make.stdout:0:4} ${#make.stdout}"
    out = ex.expand(text, WORD, step_refs=refs, shell_text=True, shell_vars={"WORD"})
    assert out == "echo ${WORD:1:2} ${#WORD} ${WORD/a/b} ${WORD:+w} /tmp ${#make.stdout}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${#WORD}|${#EMPTY}|${#NOPE}", "10|0|0"),
        (
            "${WORD/cd/XY}|${WORD//[aeiou]/_}|${WORD/c}|${WORD/?/_}",
            "abXYefghij|_bcd_fgh_j|abdefghij|_bcdefghij",
        ),
        ("${WORD/#abc/X}|${WORD/x/y}", "abcdefghij|abcdefghij"),
        ("${WORD:+set}|${NOPE:+x}|${EMPTY:+e}|${WORD+y}|${EMPTY+f}|${NOPE-z}", "set|||y||z"),
        ("${WORD#*d}|${WORD##*d}|${WORD%f*}|${WORD%%f*}", "efghij|efghij|abcde|abcde"),
        ("${WORD#abc}|${WORD%hij}|${WORD#zz}", "defghij|abcdefg|abcdefghij"),
        ("${WORD^}|${WORD^^}|${WORD,,}", "Abcdefghij|ABCDEFGHIJ|abcdefghij"),
    ],
)
def test_shell_operators_outside_command_text_follow_dagu(text: str, expected: str) -> None:
    # the values Dagu 1.30.2 gave in a DAG's env (compat case `expand_operators`)
    assert ex.expand(text, WORD, keep_unknown=False) == expected


def test_plain_references_keep_their_rules() -> None:
    assert ex.expand("$WORD ${WORD} $1 ${2}", {**WORD, "1": "one", "2": "two"}) == (
        "abcdefghij abcdefghij one two"
    )


def test_shebang_names_the_interpreter_split_on_blanks() -> None:
    assert shebang("#!/usr/bin/env python3\nprint(1)\n") == ["/usr/bin/env", "python3"]
    assert shebang("#!env perl\r\nprint 1;\r\n") == ["env", "perl"]
    assert shebang("echo hi\n#!/bin/sh\n") is None
    assert shebang("#!\nx\n") is None


def _dag(working_dir: str) -> SimpleNamespace:
    spec = SimpleNamespace(working_dir=working_dir)
    return SimpleNamespace(spec=spec, location=Path("/dags/x.yaml"))


def test_dag_workdir_expands_dag_variables_then_environ_and_tilde() -> None:
    settings = SimpleNamespace(work_dir=None)
    env = {"HOME": "/home/u", "OSVAR": "os"}
    got = dag_workdir(_dag("${BASE}/$OSVAR"), settings, variables={"BASE": "b"}, environ=env)
    assert got == Path("/dags/b/os")
    assert dag_workdir(_dag("~/w"), settings, environ=env) == Path(os.path.expanduser("~/w"))
    assert dag_workdir(_dag("$HOME/w"), settings, variables={}, environ=env) == Path("/home/u/w")
