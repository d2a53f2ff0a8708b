"""Benchmarks of `dagloop start` against the real Dagu 1.30.2 `dagu start`, in one run.

Run by hand (see bench/README.md):

    python bench/run_bench.py [--reps 5] [--only chain100,fan100] [--out bench/results.md]

Workloads (generated into a temporary DAGU_HOME per engine, reused across repetitions after one
discarded warm-up, so both engines are measured with a warm store like a real user's):
  single  one step `true`, the whole process (interpreter start, imports, store, one spawn)
  chain100  100 chained steps of `true`
  fan100  100 independent `sleep 0.1` steps with maxActiveSteps: 100
  wide    1 -> 50 -> 1 fan-out/fan-in of `true`
  out50mb one step printing 50 MB; also the peak RSS of the engine process tree (wait4 ru_maxrss)
Repetitions alternate the engines (Dagu, dagloop, Dagu, ...) so machine noise hits both alike.
Prints a Markdown table of medians and ratios dagloop/Dagu, plus the derived marginal cost per
chained step (chain100 - single) / 99, and writes it to bench/results.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PEER = Path("/tmp/dagu/node_modules/@dagu-org/dagu-linux-x64/bin/dagu")
FIFTY_MB = 50 * 1024 * 1024


def _single() -> str:
    return "steps:\n  - name: only\n    command: 'true'\n"


def _chain100() -> str:
    return "steps:\n" + "".join(f"  - name: s{i}\n    command: 'true'\n" for i in range(100))


def _fan100() -> str:
    steps = "".join(f"  - name: f{i}\n    command: sleep 0.1\n" for i in range(100))
    return f"type: graph\nmaxActiveSteps: 100\nsteps:\n{steps}"


def _wide() -> str:
    middle = "".join(
        f"  - name: w{i}\n    depends: [start]\n    command: 'true'\n" for i in range(50)
    )
    deps = ", ".join(f"w{i}" for i in range(50))
    return (
        "type: graph\nmaxActiveSteps: 50\nsteps:\n  - name: start\n    command: 'true'\n"
        f"{middle}  - name: end\n    depends: [{deps}]\n    command: 'true'\n"
    )


def _out50mb() -> str:
    # 50-byte lines, like a chatty program (not one 50 MB line).
    line = "0123456789" * 4 + "012345678"
    return f"steps:\n  - name: big\n    command: yes {line} | head -c {FIFTY_MB}\n"


WORKLOADS = {
    "single": _single,
    "chain100": _chain100,
    "fan100": _fan100,
    "wide": _wide,
    "out50mb": _out50mb,
}

# Targets of issue 3 (ratio dagloop/Dagu unless stated).
TARGETS = {
    "single": "<= 0.150 s",
    "chain100": "<= 1.0x",
    "fan100": "<= 0.8x",
    "wide": "<= 1.0x",
    "out50mb": "<= 1.0x",
    "marginal": "<= 1.5 ms",
    "rss": "<= 64 MiB",
}


@dataclass
class Samples:
    """Wall times (s) and peak RSS (KiB) of one engine on one workload."""

    seconds: list[float] = field(default_factory=list)
    maxrss_kib: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _dagloop_argv() -> list[str]:
    # The installed console script is what users run; fall back to `python -m controller`.
    script = Path(sys.executable).parent / "dagloop"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "controller"]


def _engine_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "SHELL": "/bin/sh",
        "DAGU_HOME": str(home),
        "PYTHONPATH": str(REPO_ROOT),
    }


def run_once(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, int]:
    """Run one engine process: (wall seconds, exit code, peak RSS KiB of its process tree).

    wait4 returns the child's rusage, whose ru_maxrss is the largest RSS among the child and
    the descendants it waited for, i.e. the engine itself for both engines here.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, proc.returncode, usage.ru_maxrss


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print/write the table; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per engine (≥ 5)")
    parser.add_argument("--only", default="", help="comma-separated workloads")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results.md")
    args = parser.parse_args(argv)

    peer_env = os.environ.get("DAGU_PEER_BIN")
    peer = Path(peer_env) if peer_env else DEFAULT_PEER
    if not (peer.is_file() and os.access(peer, os.X_OK)):
        print(f"Dagu binary not found at {peer}: set DAGU_PEER_BIN", file=sys.stderr)
        return 2
    names = [n for n in args.only.split(",") if n] or list(WORKLOADS)
    dagloop = _dagloop_argv()

    results: dict[str, dict[str, Samples]] = {}
    with tempfile.TemporaryDirectory(prefix="dagbench-") as tmp:
        root = Path(tmp)
        for name in names:
            results[name] = {}
            engines = {
                "dagu": lambda f: [str(peer), "start", str(f)],
                "dagloop": lambda f: [*dagloop, "start", str(f)],
            }
            setups = {}
            for engine in engines:
                home = root / engine / name
                (home / "dags").mkdir(parents=True)
                dag_file = home / "dags" / f"bench_{name}.yaml"
                dag_file.write_text(WORKLOADS[name]())
                setups[engine] = (engines[engine](dag_file), _engine_env(home), home)
                results[name][engine] = Samples()
            for rep in range(args.reps + 1):  # rep 0 is the discarded warm-up
                for engine, (cmd, env, home) in setups.items():
                    seconds, code, rss = run_once(cmd, env, home)
                    if rep == 0:
                        continue
                    samples = results[name][engine]
                    samples.seconds.append(seconds)
                    samples.maxrss_kib.append(rss)
                    if code != 0:
                        samples.failures.append(f"rep {rep}: exit {code}")
            print(f"{name}: done", file=sys.stderr)

    table = render(results, args.reps, dagloop, peer)
    print(table)
    # Only the first part is ours: the other scripts' sections (from the first `<!-- name -->`
    # marker, or a `## Soak` heading) are kept as they are.
    rest = ""
    if args.out.exists():
        old = args.out.read_text()
        cuts = [i for i in (old.find("\n<!-- "), old.find("\n## Soak")) if i >= 0]
        rest = old[min(cuts) :] if cuts else ""
    args.out.write_text(table.rstrip("\n") + "\n" + rest if rest else table)
    return 0


def _median(samples: Samples) -> float:
    return statistics.median(samples.seconds)


def render(
    results: dict[str, dict[str, Samples]], reps: int, dagloop: list[str], peer: Path
) -> str:
    """The Markdown report: medians, ratios, targets, the marginal chain cost and peak RSS."""
    lines = [
        "# dagloop vs Dagu 1.30.2 — `start` benchmarks",
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}; host: "
        f"{platform.node()} ({os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.2f}); "
        f"Python {platform.python_version()}",
        f"- dagloop: `{' '.join(Path(a).name for a in dagloop)} start FILE`; Dagu: `{peer.name} "
        "start FILE`",
        f"- medians of {reps} repetitions after one warm-up, engines alternating; "
        "wall time of the whole process",
        "",
        "| workload | Dagu (s) | dagloop (s) | dagloop/Dagu | target | failures |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name, engines in results.items():
        dagu, ours = engines["dagu"], engines["dagloop"]
        ratio = _median(ours) / _median(dagu)
        fails = "; ".join(
            f"{engine}: {', '.join(s.failures)}" for engine, s in engines.items() if s.failures
        )
        target = TARGETS[name]
        lines.append(
            f"| {name} | {_median(dagu):.3f} | {_median(ours):.3f} | {ratio:.2f}x | "
            f"{target} | {fails or '-'} |"
        )
    if "single" in results and "chain100" in results:
        marg = {
            engine: (_median(results["chain100"][engine]) - _median(results["single"][engine])) / 99
            for engine in ("dagu", "dagloop")
        }
        lines.append(
            f"| marginal per chained step, (chain100 - single)/99 | {marg['dagu'] * 1000:.2f} ms"
            f" | {marg['dagloop'] * 1000:.2f} ms | {marg['dagloop'] / marg['dagu']:.2f}x | "
            f"{TARGETS['marginal']} | - |"
        )
    if "out50mb" in results:
        rss = {
            engine: statistics.median(results["out50mb"][engine].maxrss_kib) / 1024
            for engine in ("dagu", "dagloop")
        }
        lines.append(
            f"| out50mb peak RSS (MiB, wait4 ru_maxrss) | {rss['dagu']:.1f} | "
            f"{rss['dagloop']:.1f} | {rss['dagloop'] / rss['dagu']:.2f}x | {TARGETS['rss']} | - |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
