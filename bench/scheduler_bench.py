"""Benchmarks of the control loop: `dagloop scheduler` against Dagu 1.30.2 `dagu scheduler`.

Run by hand (see bench/README.md); it re-executes itself inside a private network namespace
(`unshare -n`, loopback only) because `dagu scheduler` opens a port on all interfaces:

    python bench/scheduler_bench.py [--boundaries 2] [--only dagu,dagloop] [--out bench/results.md]

Each engine gets its own DAGU_HOME with the same 1,000 DAG files: 50 `every_NN` DAGs firing every
minute (one step appending `date +%s.%N` to a marks file) and 950 `dag_NNNN` DAGs on daily
schedules that do not fire during the run. The engines run one after the other, never together.

Per engine:
  firing delay  the mark of each every-minute DAG minus the minute boundary, over
                `--boundaries` boundaries (the first one at least 20 s after the engine started,
                so both have loaded their DAGs); median and max over all fires.
  idle CPU/RSS  utime+stime of the controller process only (not its reaped children) from
                /proc/<pid>/stat over 30 s, starting 10 s after the first boundary (after the
                fires are done), as % of one core; VmRSS from /proc/<pid>/status (max of samples).
  plan          (dagloop only) rewrite one DAG's schedule and time `dagloop plan --json` until
                its output shows the new next fire time: from the write to the answer, in ms.
  launches/s    the every-minute DAGs are renamed away, a `burst` DAG (maxActiveRuns: 50, one
                step) gets 200 runs enqueued while the engine is stopped (dagloop: the enqueue
                verb in one process; Dagu: `dagu enqueue`, 8 at a time), then the engine starts
                and the marks give completions/s: 199 / (last mark - first mark).
Prints a Markdown table with medians and ratios dagloop/Dagu and replaces its own section of
bench/results.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PEER = Path("/tmp/dagu/node_modules/@dagu-org/dagu-linux-x64/bin/dagu")
N_DAGS = 1000
N_EVERY = 50
N_BURST = 200
IDLE_SECONDS = 30.0
SECTION = "scheduler_bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    """What one engine measured."""

    delays: list[float] = field(default_factory=list)
    boundary_medians: list[float] = field(default_factory=list)  # per minute boundary
    load_at_first: float | None = None  # 1-minute load average at the first boundary
    missing: int = 0
    idle_cpu_pct: float | None = None
    rss_mib: float | None = None
    plan_ms: list[float] = field(default_factory=list)
    launches_per_s: float | None = None
    burst_done: int = 0
    burst_wall_s: float | None = None


# --------------------------------------------------------------------------- DAG files


def write_dags(dags: Path, marks: Path) -> None:
    """The 1,000-DAG directory: 50 every-minute DAGs and 950 daily ones."""
    dags.mkdir(parents=True, exist_ok=True)
    marks.mkdir(parents=True, exist_ok=True)
    quiet_hour = (dt.datetime.now().hour + 12) % 24  # never fires during the benchmark
    for i in range(N_EVERY):
        (dags / f"every_{i:02d}.yaml").write_text(
            'schedule: "* * * * *"\n'
            f"steps:\n  - name: mark\n    command: date +%s.%N >> {marks}/every_{i:02d}.txt\n"
        )
    for i in range(N_DAGS - N_EVERY):
        (dags / f"dag_{i:04d}.yaml").write_text(
            f'description: quiet DAG {i}\nschedule: "{i % 60} {quiet_hour} * * *"\n'
            f"steps:\n  - name: a\n    command: echo {i}\n  - name: b\n    command: 'true'\n"
        )


def write_burst(dags: Path, marks: Path) -> None:
    """Disable the every-minute DAGs and add the `burst` DAG."""
    for p in dags.glob("every_*.yaml"):
        p.rename(p.with_suffix(".off"))
    (dags / "burst.yaml").write_text(
        "maxActiveRuns: 50\nsteps:\n  - name: mark\n"
        f"    command: date +%s.%N >> {marks}/burst.txt\n"
    )


# --------------------------------------------------------------------------- engines


@dataclass
class Engine:
    """How to run one engine's scheduler and enqueue."""

    name: str
    home: Path
    peer: Path | None = None  # None: dagloop

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAGU_")}
        env["DAGU_HOME"] = str(self.home)
        env["PYTHONPATH"] = str(REPO_ROOT)
        return env

    def scheduler_argv(self) -> list[str]:
        if self.peer is not None:
            return [str(self.peer), "scheduler"]
        return [sys.executable, "-m", "controller", "scheduler"]

    def start(self) -> subprocess.Popen[bytes]:
        log = open(self.home / f"{self.name}-scheduler.log", "ab")  # the child keeps it
        return subprocess.Popen(
            self.scheduler_argv(),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def enqueue(self, dag: str, count: int) -> float:
        """Enqueue `count` runs of `dag`; returns the seconds it took."""
        started = time.monotonic()
        if self.peer is None:
            code = (
                "import sys\nfrom controller.cli import main\n"
                f"sys.exit(max(main(['enqueue', '-q', {dag!r}]) for _ in range({count})))"
            )
            subprocess.run(
                [sys.executable, "-c", code], env=self.env, check=True, stdout=subprocess.DEVNULL
            )
        else:
            argv = [str(self.peer), "enqueue", "-q", dag]
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(
                    pool.map(
                        lambda _: subprocess.run(
                            argv, env=self.env, check=True, capture_output=True, timeout=60
                        ),
                        range(count),
                    )
                )
        return time.monotonic() - started


def stop(proc: subprocess.Popen[bytes], home: Path) -> None:
    """SIGTERM the scheduler's group (Dagu ignores it: SIGKILL after 5 s), then any process
    still running under this benchmark's home (runs started by the engine)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    kill_leftovers(home)


def kill_leftovers(home: Path) -> None:
    """Kill processes whose command line or environment names this benchmark's home."""
    needle = str(home).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in blob:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` itself (children excluded)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    """VmRSS of `pid` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sleep_until(wall: float) -> None:
    """Sleep until the wall clock reaches `wall`."""
    while (left := wall - time.time()) > 0:
        time.sleep(min(left, 1.0))


# --------------------------------------------------------------------------- phases


def firing_phase(engine: Engine, marks: Path, boundaries: int, res: Result) -> None:
    """Start the scheduler, measure idle CPU/RSS between fires and the firing delays."""
    proc = engine.start()
    try:
        started = time.time()
        first = (int(started) // 60 + 1) * 60
        if first - started < 20:
            first += 60
        bounds = [first + 60 * k for k in range(boundaries)]
        sleep_until(first)
        res.load_at_first = os.getloadavg()[0]
        sleep_until(first + 10)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        rss = [rss_mib(proc.pid)]
        while time.monotonic() - t0 < IDLE_SECONDS:
            time.sleep(1.0)
            rss.append(rss_mib(proc.pid))
        res.idle_cpu_pct = 100 * (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
        res.rss_mib = max(rss)
        if engine.peer is None:
            res.plan_ms = plan_latency(engine)
        sleep_until(bounds[-1] + 8)
    finally:
        stop(proc, engine.home)
    per_boundary: dict[float, list[float]] = {b: [] for b in bounds}
    for i in range(N_EVERY):
        f = marks / f"every_{i:02d}.txt"
        stamps = [float(x) for x in f.read_text().split()] if f.exists() else []
        for b in bounds:
            fired = [s - b for s in stamps if b <= s < b + 30]
            if fired:
                res.delays.append(min(fired))
                per_boundary[b].append(min(fired))
            else:
                res.missing += 1
    res.boundary_medians = [statistics.median(d) for d in per_boundary.values() if d]


def plan_latency(engine: Engine, reps: int = 3) -> list[float]:
    """Rewrite one DAG's schedule; ms until `dagloop plan --json` shows the new next fire."""
    path = engine.home / "dags" / "dag_0007.yaml"
    out = []
    for rep in range(reps):
        minute = (dt.datetime.now(dt.UTC).minute + 30 + rep) % 60
        text = path.read_text().splitlines(keepends=True)
        text[1] = f'schedule: "{minute} * * * *"\n'
        written = time.monotonic()
        path.write_text("".join(text))
        deadline = written + 10
        while time.monotonic() < deadline:
            proc = subprocess.run(
                [sys.executable, "-m", "controller", "plan", "--json"],
                env=engine.env,
                capture_output=True,
                text=True,
                check=False,
            )
            doc = json.loads(proc.stdout) if proc.returncode == 0 else {}
            nexts = [
                s.get("nextStartAt") for s in doc.get("schedules", []) if s["dag"] == "dag_0007"
            ]
            if nexts and nexts[0] and int(nexts[0][14:16]) == minute:
                out.append(1000 * (time.monotonic() - written))
                break
    return out


def burst_phase(engine: Engine, marks: Path, res: Result) -> None:
    """200 queued one-step runs of a DAG with maxActiveRuns 50: completions per second."""
    write_burst(engine.home / "dags", marks)
    engine.enqueue("burst", N_BURST)
    started = time.monotonic()
    proc = engine.start()
    target = marks / "burst.txt"
    try:
        deadline = started + 180
        while time.monotonic() < deadline:
            done = len(target.read_text().split()) if target.exists() else 0
            if done >= N_BURST:
                break
            time.sleep(0.2)
        res.burst_wall_s = time.monotonic() - started
    finally:
        stop(proc, engine.home)
    stamps = sorted(float(x) for x in target.read_text().split()) if target.exists() else []
    res.burst_done = len(stamps)
    if len(stamps) >= 2 and stamps[-1] > stamps[0]:
        res.launches_per_s = (len(stamps) - 1) / (stamps[-1] - stamps[0])


# --------------------------------------------------------------------------- report


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _each(values: list[float]) -> str:
    return " / ".join(f"{v:.3f}" for v in values) or "-"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def report(results: dict[str, Result], boundaries: int) -> str:
    """The Markdown section."""
    d, g = results.get("dagu", Result()), results.get("dagloop", Result())

    def med(r: Result) -> float | None:
        return statistics.median(r.delays) if r.delays else None

    def mx(r: Result) -> float | None:
        return max(r.delays) if r.delays else None

    plan = statistics.median(g.plan_ms) if g.plan_ms else None
    rows = [
        ("firing delay median (s)", med(d), med(g), "<= 0.15 s", 3),
        ("firing delay max (s)", mx(d), mx(g), "<= 0.4 s", 3),
        ("idle CPU (% of a core, 30 s)", d.idle_cpu_pct, g.idle_cpu_pct, "<= 0.2 %", 3),
        ("controller RSS (MiB)", d.rss_mib, g.rss_mib, "<= 100 MiB", 1),
        ("changed file visible to plan (ms)", None, plan, "<= 1000 ms", 0),
        (
            "launches/s (200 runs, maxActiveRuns 50)",
            d.launches_per_s,
            g.launches_per_s,
            ">= 20/s",
            1,
        ),
        ("burst: start to 200th run (s)", d.burst_wall_s, g.burst_wall_s, "-", 1),
    ]
    load = os.getloadavg()[0]
    lines = [
        f"<!-- {SECTION} -->",
        "## Control loop: `dagloop scheduler` vs `dagu scheduler` (bench/scheduler_bench.py)",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; host: {platform.node()} "
        f"({os.cpu_count()} CPUs, load avg {load:.2f}); Python {platform.python_version()}",
        f"- {N_DAGS} DAG files, {N_EVERY} firing every minute; {boundaries} minute boundaries "
        f"per engine ({len(d.delays)} / {len(g.delays)} fires seen, missing "
        f"{d.missing} / {g.missing} for Dagu / dagloop)",
        f"- firing delay median per boundary (s): Dagu {_each(d.boundary_medians)}, dagloop "
        f"{_each(g.boundary_medians)}; load average at the first boundary: Dagu "
        f"{_fmt(d.load_at_first, 2)}, dagloop {_fmt(g.load_at_first, 2)}",
        "",
        "| measure | Dagu | dagloop | dagloop/Dagu | target |",
        "|---|---:|---:|---:|---|",
    ]
    for label, a, b, target, digits in rows:
        lines.append(
            f"| {label} | {_fmt(a, digits)} | {_fmt(b, digits)} | {_ratio(b, a)} | {target} |"
        )
    lines.append(f"<!-- /{SECTION} -->")
    return "\n".join(lines) + "\n"


def replace_section(path: Path, section: str, name: str) -> None:
    """Replace (or append) the section between `<!-- name -->` markers in `path`."""
    text = path.read_text() if path.exists() else ""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section if text else section
    path.write_text(text)


def in_netns() -> bool:
    """True when this process sees no network interface but loopback (asked via netlink;
    /sys/class/net still shows the host's interfaces inside `unshare -n`)."""
    import socket

    return [name for _, name in socket.if_nameindex()] == ["lo"]


def reexec_in_netns(argv: list[str]) -> int:
    """Run this script again inside `unshare -n` with loopback up (once: an env marker stops
    any recursion)."""
    if os.environ.get("DAGLOOP_BENCH_NETNS"):
        raise SystemExit("unshare -n did not give a loopback-only namespace")
    inner = " ".join(["exec", sys.executable, str(Path(sys.argv[0]).resolve()), *argv])
    env = dict(os.environ, DAGLOOP_BENCH_NETNS="1")
    return subprocess.call(["unshare", "-n", "sh", "-c", f"ip link set lo up && {inner}"], env=env)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints the table and writes it into --out."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--boundaries", type=int, default=2)
    ap.add_argument("--only", default="dagu,dagloop")
    ap.add_argument("--out", default=str(REPO_ROOT / "bench" / "results.md"))
    ap.add_argument("--skip-burst", action="store_true")
    args = ap.parse_args(argv)
    peer = Path(os.environ.get("DAGU_PEER_BIN", DEFAULT_PEER))
    engines = [e for e in args.only.split(",") if e]
    if "dagu" in engines and not peer.is_file():
        print(f"peer binary {peer} not found; running dagloop only", file=sys.stderr)
        engines.remove("dagu")
    if "dagu" in engines and not in_netns():
        # dagu scheduler listens on all interfaces: keep it in a loopback-only namespace.
        return reexec_in_netns(list(argv if argv is not None else sys.argv[1:]))
    results: dict[str, Result] = {}
    root = Path(tempfile.mkdtemp(prefix="dagloop-schedbench-"))
    try:
        for name in engines:
            home = root / name / "home"
            marks = root / name / "marks"
            write_dags(home / "dags", marks)
            engine = Engine(name, home, peer if name == "dagu" else None)
            res = results[name] = Result()
            print(f"[{name}] firing phase ({args.boundaries} boundaries)...", flush=True)
            firing_phase(engine, marks, args.boundaries, res)
            if not args.skip_burst:
                print(f"[{name}] burst phase...", flush=True)
                burst_phase(engine, marks, res)
    finally:
        for name in engines:
            kill_leftovers(root / name / "home")
        shutil.rmtree(root, ignore_errors=True)
    section = report(results, args.boundaries)
    print(section)
    replace_section(Path(args.out), section, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
