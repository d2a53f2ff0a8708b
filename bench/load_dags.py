"""Benchmark: load 1,000 small DAG files (the desired-state builder's cold scan).

Generates the files into a temporary directory, loads all of them with `model.loader`
(base.yaml merged, as the controller does) several times and prints the median in ms.
Target: < 1000 ms on the project machine with the C YAML loader.

    python bench/load_dags.py [--dags 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from model.loader import load_base, load_dag

_DAG = """\
description: generated DAG {i}
schedule: "{minute} {hour} * * *"
params: DAY=today N={i}
env:
  - TARGET: /tmp/bench-{i}
steps:
  - name: extract
    command: echo extract {i}
    output: RAW
  - name: transform
    command: echo "${{RAW}}" transformed
    retryPolicy:
      limit: 2
      intervalSec: 1
  - name: load
    command: echo load
    continueOn: failed
"""

_BASE = "env:\n  - SHARED: 1\nhistRetentionDays: 7\n"


def generate(directory: Path, count: int) -> list[Path]:
    """Write `count` small DAG files (and base.yaml) into `directory`; return the DAGs."""
    (directory / "base.yaml").write_text(_BASE, encoding="utf-8")
    paths = []
    for i in range(count):
        path = directory / f"dag_{i:04d}.yaml"
        path.write_text(_DAG.format(i=i, minute=i % 60, hour=i % 24), encoding="utf-8")
        paths.append(path)
    return paths


def load_all(directory: Path, paths: list[Path]) -> float:
    """Load every DAG (base merged); return the elapsed seconds."""
    started = time.perf_counter()
    base = load_base(directory / "base.yaml")
    for path in paths:
        load_dag(path, base=base)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 if the median misses the 1 s target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dags", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dagloop-bench-") as tmp:
        directory = Path(tmp)
        paths = generate(directory, args.dags)
        load_all(directory, paths[:50])  # warm up imports and pydantic validators
        times = [load_all(directory, paths) for _ in range(args.rounds)]
    median_ms = statistics.median(times) * 1000
    loader = "C (libyaml)" if yaml.__with_libyaml__ else "pure Python"
    print(
        f"loaded {args.dags} DAGs: median {median_ms:.0f} ms over {args.rounds} rounds "
        f"(min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms; YAML loader: {loader})"
    )
    return 0 if median_ms < 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
