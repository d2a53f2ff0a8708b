"""Finding a DAG file from what a user typed: a path, or a NAME in the DAGs directory.

The one lookup used by the run verbs (`controller.commands.*`) and by the fork-server's
prepared runners (`controller.spawn`). It is its own tiny module, not part of
`controller.catalog`, because `dagloop start` imports it on its hot path and the catalog costs
milliseconds to import.
"""

from __future__ import annotations

from pathlib import Path

DAG_SUFFIXES = (".yaml", ".yml")


def find_dag_file(name_or_file: str, dags_dir: Path) -> Path:
    """The resolved file: `name_or_file` itself if it is a file, else `<dags_dir>/NAME.yaml`
    or `.yml`, else `<dags_dir>/NAME` when NAME already ends in a DAG suffix; raises
    `FileNotFoundError` naming the directory searched."""
    given = Path(name_or_file).expanduser()
    if given.is_file():
        return given.resolve()
    for suffix in DAG_SUFFIXES:
        candidate = dags_dir / f"{name_or_file}{suffix}"
        if candidate.is_file():
            return candidate.resolve()
    if name_or_file.endswith(DAG_SUFFIXES) and (dags_dir / name_or_file).is_file():
        return (dags_dir / name_or_file).resolve()
    raise FileNotFoundError(f"DAG {name_or_file!r} not found (looked in {dags_dir})")
