"""Sub-DAG calls (`call:`) and `parallel:` fan-outs: what a step's child runs are.

Owns the deterministic sub-run id, the items of a parallel step, each child's target and
params, the child's `dagloop start` command line, reading a child's JSON result from its stdout,
and the step's own result document (Dagu's shape: one child's result, or a parallel summary).
Values only; starting and reaping the children is the runner's.

Called by the runner (`controller.engine.runner`: `_start_calls`, `_spawn_calls`, `_reap`,
`_finish_calls`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from controller.engine import expand as ex
from controller.engine.graph import Node, Proc

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def sub_run_id(parent_run_id: str, step: str, params: str) -> str:
    """Deterministic sub-run id (Dagu: base58(sha256("<parent>:<step>:<params>")))."""
    digest = hashlib.sha256(f"{parent_run_id}:{step}:{params}".encode()).digest()
    n = int.from_bytes(digest, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return out


def call_items(
    step: Any, scope: Mapping[str, str], step_refs: Mapping[str, Mapping[str, str]]
) -> list[Any]:
    """One child per item: the `parallel:` items (a JSON list, or words, when given as text),
    or a single `None` for a plain `call:`."""
    if step.parallel is None:
        return [None]
    items = step.parallel.items
    if isinstance(items, str):
        value = ex.expand(items, scope, step_refs=step_refs)
        try:
            parsed = json.loads(value)
            items = parsed if isinstance(parsed, list) else [parsed]
        except ValueError:
            items = value.split()
    return list(items)


def call_target(
    step: Any, scope: Mapping[str, str], *, dag: Any, dags_dir: Path, workdir: Path
) -> list[str]:
    """The DAG a child runs, as `dagloop start` arguments: a local DAG of the file, a file
    (relative to the working directory when it is there, else to the DAGs directory), or a
    name."""
    call = ex.expand(str(step.call), scope)
    if call in dag.local_dags and dag.location is not None:
        return ["--local", call, str(dag.location)]
    p = Path(os.path.expanduser(call))
    if p.suffix in (".yaml", ".yml") or "/" in call:
        if not p.is_absolute():
            p = (dags_dir / p) if not (workdir / p).exists() else (workdir / p)
        return [str(p)]
    return [call]


def missing_target(call: str, target: list[str], *, dags_dir: Path, cwd: Path) -> str | None:
    """Dagu's error when a `call:` names no DAG that exists, else None.

    Checked before any child starts: Dagu fails the step without recording a sub-run, so a
    child that would only fail to load is not spawned.
    """
    from controller.dagfile import find_dag_file

    if target[0] == "--local" or (cwd / target[0]).is_file():
        return None
    try:
        find_dag_file(target[0], dags_dir)
    except FileNotFoundError:
        return (
            f'failed to find DAG "{call}": failed to locate DAG {call}: '
            f"DAG {call} not found: file does not exist"
        )
    return None


def call_params(
    step: Any, item: Any, scope: Mapping[str, str], step_refs: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """A child's params (`KEY=value` or positional): the step's `params:` with `${ITEM}`, or
    the item itself (a map's pairs, else one positional value)."""
    from model.spec import parse_params

    scope = dict(scope)
    if item is not None:
        scope["ITEM"] = item if isinstance(item, str) else json.dumps(item)
    raw = step.params
    pairs: list[tuple[str | None, str]] = []
    if raw is not None:
        if isinstance(raw, str):
            raw = ex.expand(raw, scope, step_refs=step_refs, keep_unknown=True)
        pairs = parse_params(raw)
    elif item is not None:
        if isinstance(item, dict):
            pairs = [(str(k), str(v)) for k, v in item.items()]
        else:
            pairs = [(None, str(item))]
    out = []
    for key, value in pairs:
        v = ex.expand(value, scope, step_refs=step_refs)
        out.append(f"{key}={v}" if key is not None else v)
    return out


def call_argv(
    *, run_id: str, parent: str, root: str, target: list[str], params: list[str]
) -> list[str]:
    """The command line of a child run: `dagloop start` printing its result as JSON."""
    return [
        sys.executable,
        "-m",
        "controller",
        "start",
        "-q",
        "--json",
        "--run-id",
        run_id,
        "--parent",
        parent,
        "--root",
        root,
        *target,
        "--",
        *params,
    ]


def call_result(p: Proc) -> dict[str, Any]:
    """A finished child's result from the JSON document it printed last (failed if none)."""
    text = p.data.decode("utf-8", "replace").strip()
    doc: dict[str, Any] = {}
    start = text.rfind("\n{")
    for candidate in (text, text[start + 1 :] if start >= 0 else ""):
        if not candidate:
            continue
        try:
            doc = json.loads(candidate)
            break
        except ValueError:
            continue
    result: dict[str, Any] = {"name": doc.get("name", ""), "dagRunId": p.sub_run_id}
    # the child's resolved params as its run recorded them (`NAME=World 1=x`: defaults
    # included, positional ones numbered), absent when it has none (Dagu's omitempty); the
    # tokens passed are the fallback when the child printed no result at all
    params = doc.get("params", p.sub_params) if doc else p.sub_params
    if params:
        result["params"] = params
    result["outputs"] = _child_outputs(doc)
    result["status"] = doc.get("statusLabel", "failed")
    return result


def calls_document(node: Node) -> tuple[str, bool]:
    """The step's stdout once its children ended (JSON), and whether a child failed."""
    # item order, not completion order (Dagu); children are recorded in spawn (item) order
    order = {c["dagRunId"]: i for i, c in reversed(list(enumerate(node.children)))}
    results = sorted(node.results, key=lambda r: order.get(r["dagRunId"], len(order)))
    failed = [r for r in results if r["status"] not in ("succeeded", "partially_succeeded")]
    if node.step.parallel is not None:
        doc: Any = {
            "summary": {
                "total": len(results),
                "succeeded": len(results) - len(failed),
                "failed": len(failed),
            },
            "results": results,
            # the outputs of the successful sub-runs only, in item order (Dagu)
            "outputs": [r["outputs"] for r in results if r not in failed],
        }
    else:
        doc = results[0] if results else {}
    return json.dumps(doc, ensure_ascii=False, indent=2), bool(failed)


def calls_partial(node: Node) -> bool:
    """Whether a child of the step's last execution ended partially succeeded: the step then
    ends partially succeeded too (Dagu's sub-DAG executor reports its child's status)."""
    return any(r["status"] == "partially_succeeded" for r in node.results)


def _child_outputs(doc: Mapping[str, Any]) -> dict[str, str]:
    """A sub-run's output variables by their own names (`GREETING`, not outputs.json's camelCase
    keys; `omit`ted ones included), sorted by name as Go's JSON encoder orders a map."""
    found: dict[str, str] = {}
    for n in doc.get("nodes") or []:
        for item in n.get("outputVariables") or []:
            key, sep, value = str(item).partition("=")
            if sep:
                found[key] = value
    return dict(sorted(found.items()))
