"""Run ids and run parameters: pure helpers that import neither pydantic nor yaml.

They live apart from `model.spec` and `model.loader` (which re-export them) so that
`dagloop start` can validate a run id and resolve params on its fast path, where the DAG comes
from `model.speccache` and pydantic is never imported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

RUN_ID_PATTERN = re.compile(r"^[-a-zA-Z0-9_]+$")
# A param or variable name: the `K` of `K=V` params (DAG `params`, CLI overrides) and a step's
# `output` name. Use with `fullmatch`.
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RUN_ID_MAX_LENGTH = 64


def resolve_params(
    defaults: Sequence[tuple[str | None, str]], overrides: Sequence[tuple[str | None, str]]
) -> list[tuple[str, str]]:
    """Apply overrides by name or by position; positional params are named "1", "2", …"""
    params: list[list[str | None]] = [[k, v] for k, v in defaults]
    position = 0
    for key, value in overrides:
        if key is not None:
            for item in params:
                if item[0] == key:
                    item[1] = value
                    break
            else:
                params.append([key, value])
        else:
            if position < len(params):
                params[position][1] = value
            else:
                params.append([None, value])
            position += 1
    out: list[tuple[str, str]] = []
    for i, (param_key, param_value) in enumerate(params, start=1):
        out.append((param_key if param_key is not None else str(i), param_value or ""))
    return out
