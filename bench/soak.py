"""Soak test of the controller (issue 8; by hand, not CI): `dagloop scheduler` on 1,000 DAGs for
a long while, with random `dagloop stop` requests and a controller SIGKILL every few minutes;
with `--postgres`, on a throwaway PostgreSQL server that is also restarted (`-m immediate`)
or stopped for 10 s, in turn, every `--db-restart-every` seconds (issue 17).

    python bench/soak.py [--minutes 30] [--dags 1000] [--every 200] [--kill-every 300]
                         [--stops-per-minute 20] [--out bench/results.md] [--keep]
                         [--postgres [--db-restart-every 240]]

An isolated DAGU_HOME in a temporary directory gets `--dags` DAG files: `--every` of them fire
every minute (`* * * * *`, one step `sleep 1..30`, so ~`--every` runs a minute and some are
always running for the stops to hit), the rest have a daily schedule in an hour that does not
come up during the soak. The script starts `python -m controller scheduler`, SIGKILLs it every
`--kill-every` seconds and restarts it at once, and sends `dagloop stop <dag>` for a random DAG
with a running run, `--stops-per-minute` times a minute on average. After `--minutes` it lets
the last runs finish, stops the controller with SIGTERM and reads the store:

  started / finished   scheduled runs (one per DAG and minute boundary after the first one)
  lost                 runs recorded `lost: ...`, boundaries with neither a run nor a recorded
                       skipped tick, runs still active at the end; split into "near a kill"
                       (a kill from 60 s before the boundary to the run's end) and "outside"
  duplicates           runs per (DAG, scheduled instant) beyond one
  (with --postgres, "near a kill" also means near a database restart or stop)
  firing delay         started_at - scheduled_at: p50 / p99 / max, all and outside the kills
  RSS, fds             the controller's VmRSS and /proc/<pid>/fd count, sampled every 5 s:
                       per incarnation (between kills) first and last after a 30 s warm-up;
                       growth is judged within an incarnation (the first one also builds the
                       spec cache, the later ones read it, so they start smaller)
  orphans              processes naming the soak's home still alive after the controller
                       stopped and the drain (killed then)

Every process it started is killed at the end, also on Ctrl-C: the controller, the stop
commands, and whatever still names the home in its environment (runners, steps). The script
makes itself a child subreaper so that runners orphaned by a killed controller are reaped.
Appends (or replaces) a `## Soak` section of `--out`.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import os
import platform
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
PR_SET_CHILD_SUBREAPER = 36
SAMPLE_SECONDS = 5.0
WARMUP_SECONDS = 30.0  # a (re)started controller loads 1,000 DAGs before its RSS means much
DRAIN_SECONDS = 10.0  # after the end, at least: the last boundary's runs (sleep <= 5 s) end
MAX_DRAIN_SECONDS = 180.0  # ... and at most, waiting for every boundary to be settled
FINAL = (2, 3, 4, 6, 8)  # failed, aborted, succeeded, partially succeeded, rejected
SECTION_START = "<!-- soak -->"
SECTION_END = "<!-- /soak -->"


@dataclass
class Sample:
    """One look at the controller process."""

    at: float
    incarnation: int
    rss_mib: float
    fds: int


@dataclass
class Soak:
    """What happened during the soak, and the processes it owns."""

    home: Path
    env: dict[str, str]
    controller: subprocess.Popen[bytes] | None = None
    incarnation: int = 0
    started: list[float] = field(default_factory=list)  # start time per incarnation
    kills: list[float] = field(default_factory=list)  # controller kills and database faults
    db_faults: int = 0
    pg: Any = None  # tests.pg.PostgresServer with --postgres
    db_down_until: float | None = None  # a database stop ends then
    stops: list[tuple[float, str, subprocess.Popen[bytes]]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    orphans: int = 0
    controller_exit: int | None = None


# --------------------------------------------------------------------------- setup


def write_dags(dags: Path, total: int, every: int) -> list[str]:
    """`every` every-minute DAGs and `total - every` quiet daily ones; the every-minute names."""
    dags.mkdir(parents=True, exist_ok=True)
    quiet_hour = (dt.datetime.now().hour + 12) % 24  # never comes up during a soak < 12 h
    names = []
    for i in range(every):
        name = f"every_{i:04d}"
        names.append(name)
        (dags / f"{name}.yaml").write_text(
            f'schedule: "* * * * *"\nsteps:\n  - name: work\n    command: sleep {1 + i % 30}\n'
        )
    for i in range(total - every):
        (dags / f"quiet_{i:04d}.yaml").write_text(
            f'description: quiet DAG {i}\nschedule: "{i % 60} {quiet_hour} * * *"\n'
            f"steps:\n  - name: a\n    command: echo {i}\n  - name: b\n    command: 'true'\n"
        )
    return names


def soak_env(home: Path, repo: Path) -> dict[str, str]:
    """The environment of every dagloop process of the soak: only its own DAGU_HOME, the code
    of `repo` (a clean `git archive` gives a reproducible run in a tree others edit)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGU_")}
    env["DAGU_HOME"] = str(home)
    env["PYTHONPATH"] = str(repo)
    return env


def become_subreaper() -> None:
    """Runners outlive a SIGKILLed controller; as their subreaper we reap them (no zombies)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap(keep: set[int]) -> None:
    """Reap exited children other than `keep` (the Popen objects we wait for ourselves)."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid in keep:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(info.si_pid, 0)


# --------------------------------------------------------------------------- processes


def start_controller(s: Soak) -> None:
    """Start (or restart) `dagloop scheduler`, in its own session."""
    s.incarnation += 1
    log = open(s.home / f"controller-{s.incarnation}.log", "ab")
    s.controller = subprocess.Popen(
        [sys.executable, "-m", "controller", "scheduler"],
        env=s.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    s.started.append(time.time())


def kill_controller(s: Soak) -> None:
    """SIGKILL the controller process only: its runners live on (issue 8 #1)."""
    assert s.controller is not None
    s.controller.kill()
    s.controller.wait()
    s.kills.append(time.time())


def processes_of(home: Path) -> list[int]:
    """PIDs (not ours) whose command line or environment names `home`."""
    needle = str(home).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in blob:
            found.append(int(entry.name))
    return found


def kill_everything(s: Soak) -> None:
    """Nothing of the soak survives it."""
    if s.controller is not None and s.controller.poll() is None:
        s.controller.kill()
        s.controller.wait()
    for _at, _dag, p in s.stops:
        if p.poll() is None:
            p.kill()
            p.wait()
    for _ in range(3):
        pids = processes_of(s.home)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        reap(set())


def sample(s: Soak) -> None:
    """RSS and open descriptors of the running controller."""
    assert s.controller is not None
    pid = s.controller.pid
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return
    rss = next((int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmRSS:"), 0)
    if not rss:
        return  # it has just exited (a leader that lost its session): not yet reaped
    s.samples.append(Sample(time.time(), s.incarnation, rss / 1024, fds))


def db_path(env: dict[str, str]) -> Path | str:
    """The store of the soak's home, as the controller resolves it (a PostgreSQL URL with
    `--postgres`)."""
    sys.path.insert(0, str(REPO_ROOT))
    from model.config import load_settings

    settings = load_settings(env=env)
    return settings.database_url or Path(settings.db_path)


@contextlib.contextmanager
def read_db(path: Path | str) -> Iterator[Any]:
    """A read-only connection (SQLite in WAL mode never blocks the controller); both answer
    `execute(sql with ?, params)`."""
    if isinstance(path, str):
        from controller.store.pg import PgConnection

        pg = PgConnection(path, readonly=True, timeout_seconds=5)
        try:
            yield pg
        finally:
            pg.close()
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        yield conn
    finally:
        conn.close()


def fault_database(s: Soak, now: float) -> str:
    """Restart PostgreSQL with `-m immediate`, or (every other time) stop it for 10 s."""
    s.db_faults += 1
    s.kills.append(now)
    if s.db_faults % 2:
        s.pg.restart()
        return "database restarted (-m immediate)"
    s.pg.stop()
    s.db_down_until = now + 10.0
    return "database stopped for 10 s"


def send_stop(s: Soak, db: Path | str, rng: random.Random) -> None:
    """`dagloop stop DAG` for a random every-minute DAG that has a running run."""
    try:
        with read_db(db) as conn:
            rows = conn.execute(
                "SELECT DISTINCT dag_name FROM runs WHERE status = 1 AND dag_name LIKE 'every_%'"
            ).fetchall()
    except Exception:  # the database is away (a fault of the soak): no stop this time
        return
    if not rows:
        return  # nothing running: a stop would only test the "nothing to stop" answer
    dag = rng.choice([r[0] for r in rows])
    p = subprocess.Popen(
        [sys.executable, "-m", "controller", "stop", dag],
        env=s.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    s.stops.append((time.time(), dag, p))


# --------------------------------------------------------------------------- the soak


def first_boundary(s: Soak) -> int:
    """The first minute boundary that counts: >= 20 s after the first start, so that the
    controller has loaded its DAGs (as bench/scheduler_bench.py)."""
    return (int(s.started[0] + 20) // 60 + 1) * 60


def settled(db: Path | str, every: list[str], first: int, end: float) -> bool:
    """Every boundary up to `end` has a run or a skip record per DAG, and no run is active."""
    n_bounds = len(range(first, int(end) + 1, 60))
    try:
        with read_db(db) as conn:
            runs, active = conn.execute(
                "SELECT COUNT(*), SUM(CASE WHEN status NOT IN (2, 3, 4, 6, 8) THEN 1 ELSE 0 END) "
                "FROM runs "
                "WHERE trigger = 'schedule' AND scheduled_at >= ? AND scheduled_at <= ?",
                (first, end),
            ).fetchone()
            skips = conn.execute(
                "SELECT COUNT(*) FROM skipped_ticks WHERE scheduled_at >= ? AND scheduled_at <= ?",
                (first, end),
            ).fetchone()[0]
    except Exception:  # the database is away for a moment
        return False
    return not active and runs + skips >= n_bounds * len(every)


def drive(s: Soak, args: argparse.Namespace, every: list[str], db: Path | str) -> float:
    """Run the soak until its end; returns the end time (no kills or stops after it)."""
    rng = random.Random(args.seed)
    start_controller(s)
    t0 = time.time()
    end = t0 + 60 * float(args.minutes)
    next_kill = t0 + args.kill_every
    next_db = t0 + args.db_restart_every if s.pg is not None else float("inf")
    next_sample = t0
    stop_rate = args.stops_per_minute / 60.0
    last = time.monotonic()
    while time.time() < end:
        time.sleep(0.5)
        now = time.time()
        dt_s, last = time.monotonic() - last, time.monotonic()
        assert s.controller is not None
        reap({s.controller.pid, *(p.pid for _a, _d, p in s.stops if p.returncode is None)})
        for _a, _d, p in s.stops:
            p.poll()
        if s.controller.poll() is not None:
            print(f"controller exited by itself ({s.controller.returncode}); restarting")
            start_controller(s)
        if now >= next_kill:
            kill_controller(s)
            start_controller(s)
            print(f"{now - t0:7.1f} s: controller SIGKILLed and restarted ({s.incarnation})")
            next_kill += args.kill_every
        if now >= next_db:
            print(f"{now - t0:7.1f} s: {fault_database(s, now)}")
            next_db += args.db_restart_every
        if s.db_down_until is not None and now >= s.db_down_until:
            s.pg.resume()
            s.db_down_until = None
        if now >= next_sample:
            sample(s)
            next_sample += SAMPLE_SECONDS
        if rng.random() < stop_rate * dt_s:
            send_stop(s, db, rng)
    # let the last boundaries' runs start and end under a live controller (a loaded machine
    # launches 200 runs in tens of seconds), then stop it gracefully
    if s.db_down_until is not None:
        s.pg.resume()
        s.db_down_until = None
    drain_end = time.time() + DRAIN_SECONDS
    while time.time() < drain_end:
        time.sleep(1.0)
        assert s.controller is not None
        reap({s.controller.pid, *(p.pid for _a, _d, p in s.stops if p.returncode is None)})
        sample(s)
        if not settled(db, every, first_boundary(s), end):
            drain_end = max(drain_end, min(time.time() + 1.0, end + MAX_DRAIN_SECONDS))
    assert s.controller is not None
    s.controller.send_signal(signal.SIGTERM)
    try:
        s.controller_exit = s.controller.wait(timeout=30)
    except subprocess.TimeoutExpired:
        s.controller_exit = None
    for _a, _d, p in s.stops:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=10)
    reap(set())
    s.orphans = len(processes_of(s.home))
    return end


# --------------------------------------------------------------------------- analysis


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def analyse(s: Soak, db: Path | str, every: list[str], end: float) -> dict[str, object]:
    """The figures of the report, from the store and the samples."""
    first = first_boundary(s)
    bounds = list(range(first, int(end) + 1, 60))
    expected = {(d, float(b)) for d in every for b in bounds}
    with read_db(db) as conn:
        runs = conn.execute(
            "SELECT dag_name, scheduled_at, status, started_at, finished_at, error FROM runs "
            "WHERE trigger = 'schedule' AND scheduled_at >= ? AND scheduled_at <= ?",
            (first, end),
        ).fetchall()
        skipped = conn.execute(
            "SELECT dag_name, scheduled_at, reason FROM skipped_ticks "
            "WHERE scheduled_at >= ? AND scheduled_at <= ?",
            (first, end),
        ).fetchall()
        dups = conn.execute(
            "SELECT COUNT(*) - COUNT(DISTINCT dag_name || '@' || scheduled_at) FROM runs "
            "WHERE scheduled_at IS NOT NULL"
        ).fetchone()[0]
        manual = conn.execute("SELECT COUNT(*) FROM runs WHERE trigger != 'schedule'").fetchone()[0]

    def near_kill(at: float, until: float | None = None) -> bool:
        hi = (until or at) + 5
        return any(at - 60 <= k <= hi for k in s.kills)

    seen = {(r[0], float(r[1])) for r in runs}
    skipped_keys = {(r[0], float(r[1])) for r in skipped}
    missing = expected - seen - skipped_keys
    lost_runs = [r for r in runs if r[2] == 2 and str(r[5]).startswith("lost")]
    active = [r for r in runs if r[2] not in FINAL]
    failed = [r for r in runs if r[2] == 2 and not str(r[5]).startswith("lost")]
    delays = [r[3] - r[1] for r in runs if r[3] is not None]
    delays_calm = [r[3] - r[1] for r in runs if r[3] is not None and not near_kill(r[1], r[3])]

    def split(items: list[tuple[float, float | None]]) -> tuple[int, int]:
        near = sum(1 for at, until in items if near_kill(at, until))
        return near, len(items) - near

    per_inc: dict[int, list[Sample]] = {}
    for smp in s.samples:
        if smp.at - s.started[smp.incarnation - 1] >= WARMUP_SECONDS:
            per_inc.setdefault(smp.incarnation, []).append(smp)
    incs = sorted(per_inc)
    return {
        "boundaries": len(bounds),
        "expected": len(expected),
        "started": sum(1 for r in runs if r[3] is not None),
        "finished": sum(1 for r in runs if r[2] in FINAL),
        "succeeded": sum(1 for r in runs if r[2] == 4),
        "aborted": sum(1 for r in runs if r[2] == 3),
        "failed_other": len(failed),
        "failed_examples": sorted({str(r[5])[:80] for r in failed})[:3],
        "lost_examples": sorted({str(r[5])[:80] for r in lost_runs})[:3],
        "lost_runs": split([(float(r[1]), r[4]) for r in lost_runs]),
        "missing": split([(b, None) for _d, b in missing]),
        "active_at_end": split([(float(r[1]), None) for r in active]),
        "skipped": split([(float(r[1]), None) for r in skipped]),
        "skip_reasons": sorted({str(r[2]) for r in skipped})[:3],
        "duplicates": int(dups),
        "manual_runs": int(manual),
        "delay_p50": _pct(delays, 0.5),
        "delay_p99": _pct(delays, 0.99),
        "delay_max": max(delays) if delays else None,
        "delay_calm_p99": _pct(delays_calm, 0.99),
        "delay_calm_max": max(delays_calm) if delays_calm else None,
        "stops": len(s.stops),
        "kills": len(s.kills) - s.db_faults,
        "db_faults": s.db_faults,
        "incarnations": [
            (
                i,
                per_inc[i][0].rss_mib,
                per_inc[i][-1].rss_mib,
                min(x.fds for x in per_inc[i]),
                max(x.fds for x in per_inc[i]),
                per_inc[i][-1].at - per_inc[i][0].at,
            )
            for i in incs
        ],
        "rss_growth_max": max(
            (100 * (v[-1].rss_mib - v[0].rss_mib) / v[0].rss_mib for v in per_inc.values()),
            default=None,
        ),
        "rss_start": per_inc[incs[0]][0].rss_mib if incs else None,
        "rss_end": per_inc[incs[-1]][-1].rss_mib if incs else None,
        "fds_start": per_inc[incs[0]][0].fds if incs else None,
        "fds_end": per_inc[incs[-1]][-1].fds if incs else None,
        "orphans": s.orphans,
        "controller_exit": s.controller_exit,
        "log_errors": sum(
            p.read_text(errors="replace").count("Traceback") for p in s.home.glob("controller-*")
        ),
    }


def _f(v: object, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def report(r: dict[str, object], args: argparse.Namespace) -> str:
    """The Markdown section."""
    load = os.getloadavg()
    lost, missing, active = r["lost_runs"], r["missing"], r["active_at_end"]
    skipped = r["skipped"]
    assert isinstance(lost, tuple) and isinstance(missing, tuple) and isinstance(active, tuple)
    assert isinstance(skipped, tuple)
    rss0, rss1, rss_max = r["rss_start"], r["rss_end"], r["rss_growth_max"]
    growth = f"{rss_max:+.1f} %" if isinstance(rss_max, float) else "-"
    lines = [
        SECTION_START,
        "## Soak: `dagloop scheduler` under kills and stops (bench/soak.py)"
        if not args.postgres
        else "## Soak on PostgreSQL: kills, stops and database restarts (bench/soak.py --postgres)",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; host: {platform.node()} "
        f"({os.cpu_count()} CPUs, load avg at the end {load[0]:.2f}); "
        f"Python {platform.python_version()}",
        f"- {args.minutes} min, {args.dags} DAG files, {args.every} every minute "
        f"(~{args.every} runs/min, steps `sleep 1..30`), SIGKILL every {args.kill_every} s "
        f"({r['kills']} kills, restarted at once), {r['stops']} random `dagloop stop`s "
        f"(~{args.stops_per_minute}/min)"
        + (
            f"; PostgreSQL restarted (-m immediate) or stopped 10 s, in turn, every "
            f"{args.db_restart_every} s ({r['db_faults']} faults; they count as kills below)"
            if args.postgres
            else ""
        ),
        *([f"- {args.note}"] if args.note else []),
        "",
        "| measure | value | target |",
        "|---|---:|---|",
        f"| minute boundaries x every-minute DAGs | {r['boundaries']} x {args.every} = "
        f"{r['expected']} | - |",
        f"| runs started / finished | {r['started']} / {r['finished']} | all |",
        f"| succeeded / aborted (stops) / failed otherwise | {r['succeeded']} / {r['aborted']} / "
        f"{r['failed_other']} | - |",
        f"| lost runs (`lost: ...`), near a kill / outside | {lost[0]} / {lost[1]} | - / 0 |",
        f"| boundaries with no run and no skip record, near a kill / outside | {missing[0]} / "
        f"{missing[1]} | - / 0 |",
        f"| runs still active after the drain, near a kill / outside | {active[0]} / "
        f"{active[1]} | 0 |",
        f"| skipped ticks recorded, near a kill / outside | {skipped[0]} / {skipped[1]} | - |",
        f"| duplicate runs (same DAG and scheduled instant) | {r['duplicates']} | 0 |",
        f"| firing delay p50 / p99 / max (s), all | {_f(r['delay_p50'])} / "
        f"{_f(r['delay_p99'])} / {_f(r['delay_max'])} | - |",
        f"| firing delay p99 / max (s), away from kills | {_f(r['delay_calm_p99'])} / "
        f"{_f(r['delay_calm_max'])} | - |",
        f"| controller RSS growth within one incarnation, largest | {growth} | <= 10 % |",
        f"| controller RSS first / last sample of the soak (MiB) | {_f(rss0, 1)} / "
        f"{_f(rss1, 1)} | - |",
        f"| controller open fds first / last sample | {r['fds_start']} / {r['fds_end']} | flat |",
        f"| processes of the soak alive after the controller stopped | {r['orphans']} | 0 |",
        f"| controller exit code on SIGTERM / tracebacks in its logs | "
        f"{r['controller_exit']} / {r['log_errors']} | 0 / 0 |",
        "",
        "Per controller incarnation (samples every 5 s from 30 s after its start):",
        "",
        "| incarnation | RSS first -> last (MiB) | fds min..max | sampled (s) |",
        "|---:|---|---|---:|",
    ]
    incs = r["incarnations"]
    assert isinstance(incs, list)
    for i, a, b, lo, hi, span in incs:
        lines.append(f"| {i} | {a:.1f} -> {b:.1f} | {lo}..{hi} | {span:.0f} |")
    if r["failed_examples"] or r["lost_examples"] or r["skip_reasons"]:
        lines.append("")
        for text in r["failed_examples"]:  # type: ignore[attr-defined]
            lines.append(f"- failed run error: `{text}`")
        for text in r["lost_examples"]:  # type: ignore[attr-defined]
            lines.append(f"- lost run error: `{text}`")
        for text in r["skip_reasons"]:  # type: ignore[attr-defined]
            lines.append(f"- skip reason: `{text}`")
    lines.append(SECTION_END)
    return "\n".join(lines) + "\n"


def write_section(out: Path, section: str) -> None:
    """Replace the soak section of `out`, or append it."""
    text = out.read_text() if out.exists() else ""
    if SECTION_START in text and SECTION_END in text:
        a = text.index(SECTION_START)
        b = text.index(SECTION_END) + len(SECTION_END) + 1
        text = text[:a] + section + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    out.write_text(text)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--dags", type=int, default=1000)
    parser.add_argument("--every", type=int, default=200, help="DAGs firing every minute")
    parser.add_argument("--kill-every", type=float, default=300.0, help="seconds between kills")
    parser.add_argument("--stops-per-minute", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary DAGU_HOME")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="the dagloop code to run")
    parser.add_argument("--note", default="", help="a line for the report (machine, commit)")
    parser.add_argument("--postgres", action="store_true", help="on a throwaway PostgreSQL")
    parser.add_argument(
        "--db-restart-every", type=float, default=240.0, help="seconds between database faults"
    )
    args = parser.parse_args(argv)
    if args.postgres:
        global SECTION_START, SECTION_END
        SECTION_START, SECTION_END = "<!-- soak-postgres -->", "<!-- /soak-postgres -->"
        sys.path.insert(0, str(REPO_ROOT))
        from tests.pg import postgres_server

        with postgres_server(fsync=True) as pg:  # durable: `-m immediate` must lose nothing
            if pg is None:
                print("soak: PostgreSQL is not installed", file=sys.stderr)
                return 2
            return soak(args, pg)
    return soak(args, None)


def soak(args: argparse.Namespace, pg: Any) -> int:
    """The soak, on SQLite or on the PostgreSQL server `pg`."""

    become_subreaper()
    home = Path(tempfile.mkdtemp(prefix="dagloop-soak-"))
    s = Soak(home=home, env=soak_env(home, args.repo))
    if pg is not None:
        s.pg = pg
        s.env["DAGU_DATABASE_URL"] = pg.create_database()
        subprocess.run([sys.executable, "-m", "controller", "migrate"], env=s.env, check=True)
    # Ctrl-C and SIGTERM end the soak through the `finally` below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        every = write_dags(home / "dags", args.dags, args.every)
        db = db_path(s.env)
        print(f"soak: home {home}, {args.minutes} min")
        end = drive(s, args, every, db)
        figures = analyse(s, db, every, end)
        section = report(figures, args)
        print(section)
        write_section(args.out, section)
    except KeyboardInterrupt:
        print("soak: interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        kill_everything(s)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
