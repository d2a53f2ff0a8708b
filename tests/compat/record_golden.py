"""Record the golden results of the compatibility corpus from the real Dagu 1.30.2 binary.

Run by hand (never by pytest) whenever a DAG file of `tests/compat/dags/` is added or changed:

    python tests/compat/record_golden.py              # every case
    python tests/compat/record_golden.py chain_basic  # some cases
    python tests/compat/record_golden.py --check      # re-run Dagu, diff against the files

The binary comes from `$DAGU_PEER_BIN` or the default npm location (see `harness.find_peer`).
Each case runs in its own temporary DAGU_HOME; `golden/<case>.json` gets the normalised result
(`harness.normalise_peer`) plus the Dagu version, so CI compares dagloop against Dagu's recorded
behaviour even where the binary is absent.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.compat.harness import compare, find_peer, golden_path, load_cases, run_peer


def main(argv: list[str] | None = None) -> int:
    """Record (or with --check, verify) the golden files; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)

    peer = find_peer()
    if peer is None:
        print("Dagu binary not found: set DAGU_PEER_BIN", file=sys.stderr)
        return 2
    probe = subprocess.run([str(peer), "version"], capture_output=True, text=True, check=False)
    # `dagu version` prints to stderr.
    version = (probe.stdout.strip() or probe.stderr.strip() or "unknown").splitlines()[-1]

    cases = load_cases()
    if args.cases:
        wanted = set(args.cases)
        cases = [c for c in cases if c.name in wanted]
        missing = wanted - {c.name for c in cases}
        if missing:
            print(f"unknown cases: {sorted(missing)}", file=sys.stderr)
            return 2

    failures = 0
    for case in cases:
        with tempfile.TemporaryDirectory(prefix=f"dagcompat-{case.name}-") as tmp:
            started = time.monotonic()
            outcome = run_peer(peer, case, Path(tmp))
            elapsed = time.monotonic() - started
        result = dict(outcome.normalised)
        path = golden_path(case)
        if args.check:
            recorded = json.loads(path.read_text()) if path.exists() else {}
            diffs = compare(recorded, result)
            failures += bool(diffs)
            print(f"{case.name:32} {elapsed:5.2f}s {'DIFF' if diffs else 'same'}")
            for line in diffs:
                print(f"    {line}")
            continue
        if elapsed > 3.0:
            print(f"warning: {case.name} took {elapsed:.2f} s on Dagu (> 3 s)", file=sys.stderr)
        result["dagu_version"] = version
        path.write_text(json.dumps(result, indent=2) + "\n")
        if result["status"] == "invalid":
            print(outcome.stderr[-600:], file=sys.stderr)
        print(
            f"{case.name:32} {elapsed:5.2f}s rc={result['exit_code']} {result['status']:20} "
            f"{json.dumps(result['nodes'])}"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
