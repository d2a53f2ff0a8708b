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
    """Apply overrides by name; a positional param is named by its place ("1", "2", …).

    A default's place counts every default, an override's every override (Dagu 1.30.2:
    `a MODE=slow c` overridden by `MODE=fast x` is `1=a MODE=fast 3=c 2=x`, so `$2` is `x`):
    a positional override replaces the param of its name, else it is appended after the
    defaults, and never replaces a named default.
    """
    params = [(k if k is not None else str(i), v) for i, (k, v) in enumerate(defaults, start=1)]
    index = {name: i for i, (name, _) in enumerate(params)}
    for place, (key, value) in enumerate(overrides, start=1):
        name = key if key is not None else str(place)
        if name in index:
            params[index[name]] = (name, value)
        else:
            index[name] = len(params)
            params.append((name, value))
    return [(name, value or "") for name, value in params]
