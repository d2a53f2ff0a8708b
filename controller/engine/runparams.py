"""A run's params as stored and as run: secret-named params never reach the store (issue 8 #28).

A param whose name matches one of `Settings.secret_patterns` (`*PASSWORD*`, `*TOKEN*`,
`*KEY*`, `*SECRET*`) is stored in `runs.params` as `NAME=*****`. Whoever starts the run later
gets the real value back with `unmask_params`:

- a value handed over for this run (`hand_over`, e.g. by `dagloop enqueue` with an explicit
  secret param): a 0600 JSON file under `data_dir/handover/` that `take_handed_over` reads
  and deletes when a runner claims the run;
- otherwise the DAG's own default for that param (from the run's snapshot), so scheduled,
  queued, retried and restarted runs of a DAG whose secret comes from its defaults, a
  backtick or `${ENV}` reference work unchanged.

Limit (documented in docs/compatibility.md): a secret given explicitly to `dagloop start`
is not kept for a later `retry`/`restart`; those run with the DAG's default.

Pure apart from `hand_over`/`take_handed_over`. Called by the run commands (`start`, `retry`,
`restart`, `enqueue`, `dry`) via `controller.engine.launch`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from controller.secrets import SECRET_MASK, secret_env_names

__all__ = [
    "hand_over",
    "is_masked",
    "mask_params",
    "secret_values",
    "take_handed_over",
    "unmask_params",
]

HANDOVER_DIR = "handover"


def _secret_names(pairs: Iterable[tuple[str, str]], patterns: Sequence[str]) -> set[str]:
    return secret_env_names((k for k, _ in pairs), patterns)


def mask_params(pairs: Sequence[tuple[str, str]], patterns: Sequence[str]) -> list[str]:
    """`NAME=value` strings to store, with the value of every secret-named param (not empty)
    replaced by `*****`."""
    secret = _secret_names(pairs, patterns)
    return [f"{k}={SECRET_MASK if k in secret and v else v}" for k, v in pairs]


def secret_values(pairs: Sequence[tuple[str, str]], patterns: Sequence[str]) -> dict[str, str]:
    """The secret-named params with a value: what `hand_over` needs to keep."""
    secret = _secret_names(pairs, patterns)
    return {k: v for k, v in pairs if k in secret and v}


def is_masked(item: str) -> bool:
    """Whether a stored `NAME=value` string carries a masked value."""
    return item.partition("=")[2] == SECRET_MASK


def unmask_params(
    stored: Sequence[str],
    *,
    defaults: Sequence[tuple[str, str]],
    handed_over: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """Stored `NAME=value` strings back to the pairs a runner needs: a masked value becomes
    the handed-over value, else the DAG's default for that name, else ""."""
    handed = handed_over or {}
    default = dict(defaults)
    out: list[tuple[str, str]] = []
    for item in stored:
        key, _, value = item.partition("=")
        if value == SECRET_MASK:
            value = handed.get(key, default.get(key, ""))
        out.append((key, value))
    return out


def _handover_path(data_dir: Path, dag_name: str, run_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in dag_name) or "_"
    return data_dir / HANDOVER_DIR / f"{safe}.{run_id}.json"


def hand_over(data_dir: Path, dag_name: str, run_id: str, values: Mapping[str, str]) -> None:
    """Keep a queued run's secret param values for its runner, in a file only the owner can
    read (0600, created so, never world-readable for an instant); nothing when `values` is
    empty. Raises `FileExistsError` when the run already has one (its id is taken)."""
    if not values:
        return
    path = _handover_path(data_dir, dag_name, run_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(dict(values), f)


def take_handed_over(data_dir: Path, dag_name: str, run_id: str) -> dict[str, str]:
    """The values `hand_over` kept for this run, deleting the file; {} when there is none."""
    path = _handover_path(data_dir, dag_name, run_id)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    try:
        path.unlink()
    except OSError:
        pass
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
