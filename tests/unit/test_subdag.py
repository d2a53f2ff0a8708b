"""The pure rules of `call:`/`parallel:` (controller.engine.subdag): how a text splits into
items, how a params text splits into params, and how pairs travel to a child's command line.
Each expectation was observed on Dagu 1.30.2 (the `call_parallel_*` compat cases)."""

from __future__ import annotations

import shlex
from types import SimpleNamespace
from typing import Any

import pytest

from controller.engine.subdag import (
    MAX_PARALLEL_ITEMS,
    call_items,
    call_params,
    child_tokens,
    dagu_params,
    separated_values,
)
from model.loader import parse_param_overrides
from model.spec import ParallelSpec


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ('["x", 7, {"K": "v", "A": 1}]', ["x", "7", '{"A":1,"K":"v"}']),
        ('{"TARGET": "prod"}', ['{"TARGET": "prod"}']),  # one object is one item
        ("web1 web2  db1", ["web1", "web2", "db1"]),
        ("a, b ,c", ["a", "b", "c"]),
        ("a|b|c,d", ["a", "b", "c,d"]),  # the most frequent separator wins
        ("a;b,c", ["a", "b,c"]),  # a tie: tab, then |, then ; win over a comma
        ("l1\nl2 x\n", ["l1", "l2 x"]),
        ('"item one" "item two" three', ["item one", "item two", "three"]),
        ("   ", []),
    ],
)
def test_a_text_splits_into_items_as_dagu_splits_it(text: str, items: list[str]) -> None:
    assert separated_values(text) == items


@pytest.mark.parametrize(
    ("text", "pairs"),
    [
        ("a b", [(None, "a"), (None, "b")]),
        ('X="a b" Y=z', [("X", "a b"), ("Y", "z")]),
        ('X="q\\"r"', [("X", 'q"r')]),
        ('{"B": "1", "A": 2}', [("A", "2"), ("B", "1")]),  # a JSON object: its keys, sorted
        ('["a", {"K": "v"}]', [(None, "a"), ("K", "v")]),
    ],
)
def test_a_params_text_splits_as_the_child_reads_it(
    text: str, pairs: list[tuple[str | None, str]]
) -> None:
    assert dagu_params(text) == pairs


def _step(items: Any, params: Any = None) -> SimpleNamespace:
    return SimpleNamespace(parallel=ParallelSpec.model_validate(items), params=params)


def test_params_are_split_before_the_item_is_substituted() -> None:
    step = _step(["a b"], params="X=${ITEM} Y=z")
    [item] = call_items(step, {}, {})
    assert call_params(step, item, {}, {}) == [("X", "a b"), ("Y", "z")]


def test_static_object_items_are_compact_json_of_strings() -> None:
    step = _step({"items": [{"B": 1.0, "A": True, "C": "${R}"}]})
    assert call_items(step, {"R": "north"}, {}) == ['{"A":"true","B":"1","C":"north"}']


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ("", "parallel execution requires at least one item"),
        (
            " ".join(["x"] * (MAX_PARALLEL_ITEMS + 1)),
            "parallel execution exceeds maximum limit: 1001 items (max: 1000)",
        ),
    ],
)
def test_no_items_or_too_many_are_refused(items: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_items(_step(items), {}, {})


def test_boolean_items_are_refused_at_load() -> None:
    with pytest.raises(ValueError, match="parallel items must be strings, numbers, or objects"):
        ParallelSpec.model_validate([True])


@pytest.mark.parametrize(
    "pairs",
    [
        [("X", "a b"), (None, "c d"), ("J", '{"k": "v"}')],
        [("X", 'q"r'), (None, "plain"), ("E", "")],
    ],
)
def test_pairs_reach_the_child_unchanged(pairs: list[tuple[str | None, str]]) -> None:
    """The child (`dagloop start -- ARGS`) reads the tokens back as the same pairs."""
    tokens = child_tokens(pairs)
    # the argv round trip: the tokens are separate arguments, as subprocess passes them
    assert shlex.split(shlex.join(tokens)) == tokens
    assert parse_param_overrides(tokens) == pairs
