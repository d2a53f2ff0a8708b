"""outputs.json keys of output variables (`model.outputs.camel_key`)."""

from __future__ import annotations

import pytest

from model.outputs import camel_key


@pytest.mark.parametrize(
    ("name", "key"),
    [("OUT1", "out1"), ("MY_VAR", "myVar"), ("A__B_", "aB"), ("already", "already"), ("_", "_")],
)
def test_output_variable_names_become_dagu_camel_case_keys(name: str, key: str) -> None:
    assert camel_key(name) == key
