"""`dagloop validate` gives the verdicts of `dagu validate` 1.30.2, plus only the listed refusals.

Each file of `tests/compat/validate/` starts with the verdict recorded from the real binary
(`# dagu-validate: valid` or `invalid`). dagloop must give the same verdict, except for a file
marked `# dagloop-refuses: <refusal>`, which names one of the refusals listed in
docs/compatibility.md ("What `validate` refuses beyond Dagu 1.30.2"): Dagu accepts it, dagloop
refuses it. `-m peer` checks the recorded verdicts against the live binary.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from model.loader import DagLoadError, load_dag
from tests.compat.harness import REPO_ROOT, engine_env, find_peer

VALIDATE_DIR = Path(__file__).resolve().parent / "validate"
DOC = REPO_ROOT / "docs" / "compatibility.md"
REFUSALS_SECTION = "## What `validate` refuses beyond Dagu 1.30.2"


@dataclass(frozen=True)
class VerdictCase:
    """One file with Dagu's recorded verdict and dagloop's listed extra refusal, if any."""

    path: Path
    dagu_valid: bool
    refusal: str | None


def _header(path: Path, key: str) -> str | None:
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        name, _, value = line.lstrip("# ").partition(":")
        if name == key:
            return value.strip()
    return None


def load_verdict_cases() -> list[VerdictCase]:
    """Every file of tests/compat/validate/ with its headers."""
    cases = []
    for path in sorted(VALIDATE_DIR.glob("*.yaml")):
        verdict = _header(path, "dagu-validate")
        assert verdict in ("valid", "invalid"), f"{path.name}: no dagu-validate header"
        refusal = _header(path, "dagloop-refuses")
        cases.append(VerdictCase(path, verdict == "valid", refusal))
    return cases


CASES = load_verdict_cases()


def dagloop_accepts(path: Path) -> bool:
    """dagloop's verdict: the loader `validate` uses loads the file."""
    try:
        load_dag(path)
    except DagLoadError:
        return False
    return True


def listed_refusals() -> str:
    """The text of the section that lists dagloop's extra refusals."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(REFUSALS_SECTION)
    return text[start : text.index("\n## ", start + 1)].lower()


def test_corpus_covers_both_verdicts_and_extra_refusals() -> None:
    assert len(CASES) >= 20
    assert {c.dagu_valid for c in CASES} == {True, False}
    assert any(c.refusal for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.path.stem for c in CASES])
def test_dagloop_verdict_matches_dagu(case: VerdictCase) -> None:
    """The same verdict as Dagu, or a refusal that docs/compatibility.md lists."""
    if case.refusal is None:
        assert dagloop_accepts(case.path) is case.dagu_valid
        return
    assert case.dagu_valid, "an extra refusal is only for files Dagu accepts"
    assert case.refusal.lower() in listed_refusals(), f"{case.refusal!r} is not listed"
    assert not dagloop_accepts(case.path)


@pytest.mark.peer
@pytest.mark.parametrize("case", CASES, ids=[c.path.stem for c in CASES])
def test_recorded_verdict_is_dagus(case: VerdictCase, tmp_path: Path) -> None:
    """The recorded verdict is what the live `dagu validate` says now."""
    peer = find_peer()
    if peer is None:
        pytest.skip("Dagu 1.30.2 binary not found: set DAGU_PEER_BIN")
    proc = subprocess.run(
        [str(peer), "validate", str(case.path)],
        env=engine_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (proc.returncode == 0) is case.dagu_valid, proc.stdout + proc.stderr
