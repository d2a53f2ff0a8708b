"""outputs.json keys of output variables (`model.outputs.camel_key`)."""

from __future__ import annotations

import pytest

from controller.engine.variables import visible_outputs
from model.outputs import camel_key


@pytest.mark.parametrize(
    ("name", "key"),
    [("OUT1", "out1"), ("MY_VAR", "myVar"), ("A__B_", "aB"), ("already", "already"), ("_", "_")],
)
def test_output_variable_names_become_dagu_camel_case_keys(name: str, key: str) -> None:
    assert camel_key(name) == key


def test_visible_outputs_nearest_ancestor_first_in_depends_order() -> None:
    depends = {"a": [], "b": ["a"], "c": [], "d": ["b", "c"], "e": ["c", "b"], "f": []}
    published = {"a": {"V": "a"}, "c": {"V": "c", "W": "w"}}
    # c is a direct dependency of d, a only through b: the nearer one wins.
    assert visible_outputs("d", depends, published) == {"V": "c", "W": "w"}
    # Among direct dependencies the first listed wins.
    assert visible_outputs("b", depends, published) == {"V": "a"}
    # A step that is no ancestor is not seen.
    assert visible_outputs("f", depends, published) == {}


def test_visible_outputs_exclude_the_steps_own_previous_output() -> None:
    # A repeated step sees its ancestors' value again, not what its last execution printed.
    published = {"a": {"V": "a"}, "b": {"V": "b-a"}}
    assert visible_outputs("b", {"b": ["a"]}, published) == {"V": "a"}
