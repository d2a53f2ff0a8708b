"""Benchmarks of the read API: `dagloop server` against Dagu 1.30.2 `dagu server`.

Run by hand (see bench/README.md); it re-executes itself inside a private network namespace
(`unshare -n`, loopback only), where both servers listen on 127.0.0.1:

    python bench/api_bench.py [--runs 10000] [--requests 60] [--seconds 5] [--only dagu,dagloop]

Data, the same for both engines: the 1,000 DAG files of bench/scheduler_bench.py plus a
100-step chain `hundred`, and `--runs` recorded runs (10,000: 10 per DAG, one per day over the
last 10 days; 100,000: 100 per DAG over 100 days; 2 steps each, statuses succeeded/failed), so
today's window holds ~1,000 runs either way.
  dagloop: the rows a runner writes (run and steps, final status), inserted in one transaction
           of the store (`Store.transaction`): a commit per run would take minutes at 100,000.
  Dagu:    one real `dagu start` of a 2-step DAG gives a template attempt (status.jsonl +
           dag.json, Dagu's own writer); it is copied to
           data/dag-runs/<dag>/dag-runs/YYYY/MM/DD/dag-run_<ts>Z_<id>/attempt_<ts>_<ms>Z_<att>/
           (reference §4.3) with the DAG name, run id (UUIDv7 of the run's time), attempt id
           and timestamps substituted — 10,000 runs in Dagu's layout without 10,000 processes.
  Both:    one real run of `hundred` through the engine's own `start`, for the run details.
Measures (after 3 warm-up requests each):
  p50        one keep-alive connection, sequential requests (`--requests`, capped at 15 s), of
             /dags, /metrics, /health, a 100-step run's details, and /dag-runs: as a client
             asks (today's runs; dagloop answers its first page of 100, Dagu all of them) and
             with perPage=1000 (the same ~1,000 runs from both)
  req/s      8 connections for `--seconds`: wrk -t2 -c8 when installed, else 8 Python threads
             with http.client keep-alive
  RSS        max VmRSS of the server process sampled during the load
Prints a Markdown table with ratios dagloop/Dagu and replaces its own section of
bench/results.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduler_bench import (
    DEFAULT_PEER,
    REPO_ROOT,
    in_netns,
    kill_leftovers,
    reexec_in_netns,
    replace_section,
    rss_mib,
    write_dags,
)

SECTION = "api_bench"


@dataclass
class Numbers:
    """What one engine measured, by measure name."""

    p50_ms: dict[str, float] = field(default_factory=dict)
    rps: dict[str, float] = field(default_factory=dict)
    rss_mib: float = 0.0
    errors: list[str] = field(default_factory=list)


def uuid7(ts: float) -> str:
    """A UUIDv7 for the instant `ts` (as both engines make run ids)."""
    ms = int(ts * 1000)
    rand = int.from_bytes(secrets.token_bytes(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62 | (rand & ((1 << 62) - 1))
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def hundred_yaml() -> str:
    """A 100-step chain of `true`."""
    return "steps:\n" + "".join(f"  - name: s{i:03d}\n    command: 'true'\n" for i in range(100))


def run_times(now: float, per_dag: int) -> list[float]:
    """One run per day over the last `per_dag` days."""
    return [now - 86400 * k - 3600 for k in range(per_dag)]


# --------------------------------------------------------------------------- dagloop data


def seed_dagloop(home: Path, dag_names: list[str], per_dag: int) -> None:
    """`per_dag` finished runs per DAG with two steps each, in one transaction."""
    sys.path.insert(0, str(REPO_ROOT))
    from controller.store.store import Store
    from model.status import RunStatus, StepStatus

    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    now = time.time()
    runs, steps = [], []
    for name in dag_names:
        for k, t in enumerate(run_times(now, per_dag)):
            status = RunStatus.FAILED if k % 5 == 4 else RunStatus.SUCCEEDED
            run_id, row_id = uuid7(t), len(runs) + 1  # row ids given: no RETURNING per run
            runs.append(
                (row_id, name, run_id, str(home / "dags" / f"{name}.yaml"), name, int(status),
                 "schedule", t, t + 1.5, name, run_id, t, t + 1.5)
            )  # fmt: skip
            steps += [
                (row_id, i, "step", step, int(StepStatus.SUCCEEDED), 0, t, t + 1)
                for i, step in enumerate(("a", "b"))
            ]
    with Store(data / "dagloop.db") as store, store.transaction() as db:
        db.executemany(
            "INSERT INTO runs (id, dag_name, run_id, file, queue, status, trigger, started_at,"
            " finished_at, root_dag, root_run_id, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            runs,
        )
        db.executemany(
            "INSERT INTO steps (run, position, kind, name, status, exit_code, started_at,"
            " finished_at) VALUES (?,?,?,?,?,?,?,?)",
            steps,
        )


# --------------------------------------------------------------------------- Dagu data


def seed_dagu(
    home: Path, peer: Path, dag_names: list[str], per_dag: int, env: dict[str, str]
) -> None:
    """Clone one real Dagu attempt into `per_dag` runs per DAG in Dagu's own layout."""
    (home / "dags" / "tmpl.yaml").write_text(
        "steps:\n  - name: a\n    command: echo 1\n  - name: b\n    command: 'true'\n"
    )
    subprocess.run([str(peer), "start", "-q", "tmpl"], env=env, check=True, timeout=60)
    (home / "dags" / "tmpl.yaml").unlink()
    root = home / "data" / "dag-runs"
    (status_file,) = root.glob("tmpl/dag-runs/*/*/*/dag-run_*/attempt_*/status.jsonl")
    attempt_dir = status_file.parent
    status_text = status_file.read_text().strip().splitlines()[-1]
    dag_json = (attempt_dir / "dag.json").read_text()
    tmpl_status = json.loads(status_text)
    old_id, old_attempt = tmpl_status["dagRunId"], tmpl_status["attemptId"]
    old_started = tmpl_status["startedAt"]
    old_created = str(tmpl_status["createdAt"])
    shutil.rmtree(root / "tmpl")
    now = time.time()
    for name in dag_names:
        for k, t in enumerate(run_times(now, per_dag)):
            when = dt.datetime.fromtimestamp(t, dt.UTC)
            run_id, attempt = uuid7(t), secrets.token_hex(3)
            stamp = when.strftime("%Y%m%d_%H%M%S")
            target = (
                root / name / "dag-runs" / when.strftime("%Y/%m/%d") / f"dag-run_{stamp}Z_{run_id}"
            ) / f"attempt_{stamp}_{when.microsecond // 1000:03d}Z_{attempt}"
            target.mkdir(parents=True)
            text = status_text
            if k % 5 == 4:
                text = text.replace('"status":4,"workerId"', '"status":2,"workerId"', 1)
            for old, new in (
                (old_id, run_id),
                (old_attempt, attempt),
                (old_started, when.strftime("%Y-%m-%dT%H:%M:%SZ")),
                (old_created, str(int(t * 1000))),
                ("tmpl", name),
            ):
                text = text.replace(old, new)
            (target / "status.jsonl").write_text(text + "\n")
            (target / "dag.json").write_text(dag_json.replace("tmpl", name))


# --------------------------------------------------------------------------- load client


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, path: str, timeout: float = 60.0) -> None:
    """Poll until `path` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"server on {port} did not answer {path}")


def p50(port: int, path: str, count: int, budget_s: float = 15.0) -> float:
    """Median latency (ms) of sequential keep-alive GETs; raises on a non-200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    started = time.monotonic()
    for i in range(count + 3):
        t = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: {resp.status} {body[:200]!r}")
        if i >= 3:
            times.append(1000 * (time.perf_counter() - t))
        if i >= 8 and time.monotonic() - started > budget_s:
            break
    conn.close()
    return statistics.median(times)


def throughput(port: int, path: str, seconds: float, pid: int) -> tuple[float, float]:
    """(requests/s with 8 connections, max server RSS MiB during the load)."""
    rss = [rss_mib(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            rss.append(rss_mib(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        if shutil.which("wrk"):
            out = subprocess.run(
                ["wrk", "-t2", "-c8", f"-d{int(seconds)}s", f"http://127.0.0.1:{port}{path}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            m = re.search(r"Requests/sec:\s+([\d.]+)", out)
            bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            if bad:
                raise RuntimeError(f"GET {path}: {bad.group(1)} non-2xx responses")
            return (float(m.group(1)) if m else 0.0), max(rss)
        counts = [0] * 8
        deadline = time.monotonic() + seconds

        def worker(i: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while time.monotonic() < deadline:
                conn.request("GET", path)
                conn.getresponse().read()
                counts[i] += 1

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        started = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return sum(counts) / (time.monotonic() - started), max(rss)
    finally:
        stop.set()
        sampler.join()


# --------------------------------------------------------------------------- per engine


def bench_engine(name: str, root: Path, peer: Path, args: argparse.Namespace) -> Numbers:
    """Seed the data, start the server, measure."""
    home = root / name / "home"
    write_dags(home / "dags", root / name / "marks")
    (home / "dags" / "hundred.yaml").write_text(hundred_yaml())
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGU_")}
    env.update(DAGU_HOME=str(home), PYTHONPATH=str(REPO_ROOT), DAGU_HOST="127.0.0.1")
    dag_names = sorted(p.stem for p in (home / "dags").glob("*.yaml") if p.stem != "hundred")
    per_dag = max(args.runs // len(dag_names), 1)
    t = time.monotonic()
    if name == "dagu":
        seed_dagu(home, peer, dag_names, per_dag, env)
        start = [str(peer), "start", "-q", "hundred"]
        server = [str(peer), "server"]
    else:
        seed_dagloop(home, dag_names, per_dag)
        start = [sys.executable, "-m", "controller", "start", "-q", "hundred"]
        server = [sys.executable, "-m", "controller", "server"]
    subprocess.run(start, env=env, check=True, timeout=120, stdout=subprocess.DEVNULL)
    print(f"[{name}] seeded {len(dag_names) * per_dag} runs in {time.monotonic() - t:.1f} s")
    port = free_port()
    env["DAGU_PORT"] = str(port)
    log = open(root / f"{name}-server.log", "wb")  # the child keeps it
    proc = subprocess.Popen(
        server, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    nums = Numbers()
    try:
        wait_http(port, "/api/v2/health")
        wait_http(port, "/api/v2/dags")
        hundred_id = latest_run_id(port, "hundred")
        paths = {
            "dags": "/api/v2/dags",
            "metrics": "/api/v2/metrics",
            "run100": f"/api/v2/dag-runs/hundred/{hundred_id}",
            "runs": "/api/v2/dag-runs",
            "runs1000": "/api/v2/dag-runs?perPage=1000",
            "health": "/api/v2/health",
        }
        for key, path in paths.items():
            nums.p50_ms[key] = p50(port, path, args.requests)
        for key in ("dags", "health", "metrics"):
            rps, rss = throughput(port, paths[key], args.seconds, proc.pid)
            nums.rps[key] = rps
            nums.rss_mib = max(nums.rss_mib, rss)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        kill_leftovers(home)
    return nums


def latest_run_id(port: int, dag: str) -> str:
    """The run id of the latest run of `dag`, from the run-details endpoint."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", f"/api/v2/dag-runs/{dag}/latest")
    doc = json.loads(conn.getresponse().read())
    return str(doc["dagRunDetails"]["dagRunId"])


# --------------------------------------------------------------------------- report


def section_name(runs: int) -> str:
    """The results.md section of a run count (10,000 keeps the historical name)."""
    return SECTION if runs == 10_000 else f"{SECTION}_{runs}"


def report(results: dict[str, Numbers], runs: int) -> str:
    """The Markdown section."""
    d, g = results.get("dagu", Numbers()), results.get("dagloop", Numbers())
    rows = [
        ("GET /api/v2/dags p50 (ms)", d.p50_ms.get("dags"), g.p50_ms.get("dags"), "<= 10 ms", 1),
        ("GET /api/v2/dags req/s, 8 conns", d.rps.get("dags"), g.rps.get("dags"), ">= 150", 0),
        ("GET /api/v2/metrics p50 (ms)", d.p50_ms.get("metrics"), g.p50_ms.get("metrics"),
         "<= 15 ms", 1),
        ("GET /api/v2/metrics req/s, 8 conns", d.rps.get("metrics"), g.rps.get("metrics"), "-",
         0),
        ("run details, 100 steps, p50 (ms)", d.p50_ms.get("run100"), g.p50_ms.get("run100"),
         "<= Dagu", 2),
        ("GET /api/v2/dag-runs p50 (ms; Dagu: all of today's, dagloop: a page of 100)",
         d.p50_ms.get("runs"), g.p50_ms.get("runs"), "< 20 ms", 1),
        ("GET /api/v2/dag-runs?perPage=1000 p50 (ms; ~1,000 runs from both)",
         d.p50_ms.get("runs1000"), g.p50_ms.get("runs1000"), "-", 1),
        ("GET /api/v2/health p50 (ms)", d.p50_ms.get("health"), g.p50_ms.get("health"), "-", 2),
        ("GET /api/v2/health req/s, 8 conns", d.rps.get("health"), g.rps.get("health"),
         ">= 2000", 0),
        ("server RSS under load (MiB)", d.rss_mib or None, g.rss_mib or None, "<= 120 MiB", 1),
    ]  # fmt: skip
    tool = "wrk -t2 -c8" if shutil.which("wrk") else "8 Python threads (http.client)"
    section = section_name(runs)
    lines = [
        f"<!-- {section} -->",
        f"## Read API at {runs:,} runs: `dagloop server` vs `dagu server` (bench/api_bench.py)",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; host: {platform.node()} "
        f"({os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.2f}); throughput with {tool}",
        f"- 1,000 DAG files + `hundred` (100 steps), {runs:,} recorded runs (~1,000 of them "
        "today); p50 of sequential keep-alive requests",
        "",
        "| measure | Dagu | dagloop | dagloop/Dagu | target |",
        "|---|---:|---:|---:|---|",
    ]
    for label, a, b, target, digits in rows:
        fa = "-" if a is None else f"{a:.{digits}f}"
        fb = "-" if b is None else f"{b:.{digits}f}"
        ratio = "-" if a is None or b is None or not a else f"{b / a:.2f}x"
        lines.append(f"| {label} | {fa} | {fb} | {ratio} | {target} |")
    lines.append(f"<!-- /{section} -->")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints the table and writes it into --out."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10_000, help="recorded runs (1,000 DAGs)")
    ap.add_argument("--requests", type=int, default=60, help="sequential requests for p50")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each req/s load")
    ap.add_argument("--only", default="dagu,dagloop")
    ap.add_argument("--out", default=str(REPO_ROOT / "bench" / "results.md"))
    args = ap.parse_args(argv)
    peer = Path(os.environ.get("DAGU_PEER_BIN", DEFAULT_PEER))
    engines = [e for e in args.only.split(",") if e]
    if "dagu" in engines and not peer.is_file():
        print(f"peer binary {peer} not found; running dagloop only", file=sys.stderr)
        engines.remove("dagu")
    if "dagu" in engines and not in_netns():
        return reexec_in_netns(list(argv if argv is not None else sys.argv[1:]))
    root = Path(tempfile.mkdtemp(prefix="dagloop-apibench-"))
    results: dict[str, Numbers] = {}
    try:
        for name in engines:
            results[name] = bench_engine(name, root, peer, args)
    finally:
        for name in engines:
            kill_leftovers(root / name / "home")
        shutil.rmtree(root, ignore_errors=True)
    section = report(results, args.runs)
    print(section)
    replace_section(Path(args.out), section, section_name(args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
