"""Throughput of one-step runs: 1, 2 and 3 workers on PostgreSQL against one host on SQLite.

Run by hand (see bench/README.md):

    python bench/workers_bench.py [--runs 300] [--repeats 2] [--out bench/results.md]

A throwaway PostgreSQL server is started on 127.0.0.1 (`tests/pg.py`: initdb + pg_ctl, fsync
on, as a real server would run); every configuration gets a new database (or SQLite home) with
the same DAG (`maxActiveRuns: 30`, one step `true`) and `--runs` runs queued before the
processes start (as `dagloop enqueue` records them). Configurations:

  sqlite    one `dagloop scheduler` (dispatch local: it starts the runners itself)
  pg-N      one `dagloop scheduler` (dispatch workers) and N `dagloop worker -m 10`

Throughput = runs / (last finished_at - first started_at), from the store's own records, so
process start-up is not counted; median of `--repeats`. The section `workers_bench` of
bench/results.md is replaced.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from controller.store.filters import RunFilter  # noqa: E402
from controller.store.migrate import upgrade  # noqa: E402
from controller.store.store import Store  # noqa: E402
from model.config import load_settings  # noqa: E402
from model.status import RunStatus  # noqa: E402
from tests.pg import PostgresServer, postgres_server  # noqa: E402

SECTION = "workers_bench"
DAG = 'maxActiveRuns: 30\nsteps:\n  - name: one\n    command: "true"\n'


def home_env(root: Path, url: str | None, dispatch: str) -> dict[str, str]:
    """A DAGU_HOME under `root` with the bench DAG; the environment of its processes."""
    (root / "dags").mkdir(parents=True)
    (root / "dags" / "one.yaml").write_text(DAG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGU_")}
    env.update(
        DAGU_HOME=str(root),
        DAGU_SCHEDULER_DISPATCH=dispatch,
        DAGU_CONTROLLER_RESYNC_INTERVAL_SECONDS="1",
        PYTHONPATH=str(REPO_ROOT),
    )
    if url:
        env["DAGU_DATABASE_URL"] = url
    return env


def enqueue(location: Path | str, file: Path, runs: int) -> None:
    """Queue `runs` runs of the bench DAG, as `dagloop enqueue` records them."""
    with Store(location) as store:
        for i in range(runs):
            store.record_run(
                dag_name="one",
                run_id=f"r{i:05d}",
                status=RunStatus.QUEUED,
                file=str(file),
                spec_yaml=DAG,
                trigger="enqueue",
            )


def measure(location: Path | str, env: dict[str, str], workers: int, runs: int) -> float:
    """Start the processes, wait for every run to finish; runs per second."""
    procs = [spawn(env, "scheduler")]
    procs += [spawn(env, "worker", "-m", "10", "-w", f"w{i}") for i in range(workers)]
    try:
        deadline = time.monotonic() + 600
        with Store(location) as store:
            while time.monotonic() < deadline:
                done = store.count_runs_by_status([RunStatus.SUCCEEDED])[RunStatus.SUCCEEDED]
                if done == runs:
                    break
                time.sleep(0.5)
            rows = store.list_runs(RunFilter(dag_name="one"), limit=runs + 1)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    if len(rows) != runs or any(r.status != RunStatus.SUCCEEDED for r in rows):
        raise RuntimeError(f"not every run succeeded ({len(rows)} rows)")
    first = min(r.started_at or 0.0 for r in rows)
    last = max(r.finished_at or 0.0 for r in rows)
    return runs / (last - first)


def spawn(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """`python -m controller ARGS` with output discarded."""
    return subprocess.Popen(
        [sys.executable, "-m", "controller", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def one(server: PostgresServer | None, workers: int, runs: int) -> float:
    """One measurement of a configuration (workers 0 = SQLite, one host)."""
    with tempfile.TemporaryDirectory(prefix="dagloop-wbench-") as tmp:
        root = Path(tmp) / "home"
        if workers == 0:
            env = home_env(root, None, "local")
            location: Path | str = root / "data" / "dagloop.db"
        else:
            assert server is not None
            url = server.create_database()
            env = home_env(root, url, "workers")
            upgrade(load_settings(env=env))
            location = url
        Store(location).close()
        enqueue(location, root / "dags" / "one.yaml", runs)
        return measure(location, env, workers, runs)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(REPO_ROOT / "bench" / "results.md"))
    args = ap.parse_args(argv)
    results: dict[str, list[float]] = {}
    with postgres_server(fsync=True) as server:
        if server is None:
            print("PostgreSQL is not installed (Debian package postgresql)", file=sys.stderr)
            return 1
        for _ in range(args.repeats):
            for workers in (0, 1, 2, 3):
                name = "sqlite, one host" if workers == 0 else f"PostgreSQL, {workers} worker(s)"
                rate = one(server, workers, args.runs)
                results.setdefault(name, []).append(rate)
                print(f"{name}: {rate:.1f} runs/s", flush=True)
    base = statistics.median(results["sqlite, one host"])
    load = os.getloadavg()[0]
    lines = [
        f"<!-- {SECTION} -->",
        "## Workers: one-step runs per second (bench/workers_bench.py)",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; host: {platform.node()} "
        f"({os.cpu_count()} CPUs, load avg at the end {load:.2f}); all processes on this host",
        f"- {args.runs} queued runs of a one-step DAG (`true`, maxActiveRuns 30), workers "
        f"`-m 10`; runs / (last finish - first start) from the store; median of {args.repeats}",
        "",
        "| configuration | runs/s | vs SQLite, one host |",
        "|---|---:|---:|",
    ]
    for name, rates in results.items():
        med = statistics.median(rates)
        lines.append(f"| {name} | {med:.1f} | {med / base:.2f}x |")
    lines.append(f"<!-- /{SECTION} -->")
    section = "\n".join(lines) + "\n"
    print(section)
    out = Path(args.out)
    text = out.read_text() if out.exists() else ""
    start, end = f"<!-- {SECTION} -->", f"<!-- /{SECTION} -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
