"""Sub-DAG calls (`call:`) and `parallel:` fan-outs: what a step's child runs are.

Owns the deterministic sub-run id, the items of a parallel step (split as Dagu 1.30.2 splits
them, at most 1000), each child's target and params (split as Dagu splits them, then handed to
the child unchanged), the child's `dagloop start` command line, the parent's secret values on
the child's stdin, reading a child's JSON result from its stdout, and the step's own result
document (Dagu's shape: one child's result, or a parallel summary). Values only, apart from
the pipe helpers; starting and collecting the children is `controller.engine.calls`'s.

Called by `controller.engine.calls` (which starts and collects the children), the runner
(`calls_partial`) and `dagloop start` (`read_inherited_secrets`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from controller.engine import expand as ex
from controller.engine.graph import Node, Proc

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

# A child's params: (name, or None for a positional one, value), in order.
Pairs = list[tuple[str | None, str]]


def sub_run_id(
    parent_run_id: str, step: str, params: str, *, execution: tuple[int, int] = (0, 0)
) -> str:
    """Deterministic sub-run id (Dagu: base58(sha256("<parent>:<step>:<params>"))).

    `execution` is the step's (retryCount, doneCount): an execution after the first gets new
    ids, so its sub-runs never collide with the recorded ones (Dagu retries the same sub-run
    instead; docs/compatibility.md).
    """
    if execution != (0, 0):
        params += f"#{execution[0]}.{execution[1]}"
    digest = hashlib.sha256(f"{parent_run_id}:{step}:{params}".encode()).digest()
    n = int.from_bytes(digest, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return out


# Dagu 1.30.2 refuses a fan-out over more items than this (`BuildSubDAGRuns`).
MAX_PARALLEL_ITEMS = 1000


def call_items(
    step: Any, scope: Mapping[str, str], step_refs: Mapping[str, Mapping[str, str]]
) -> list[str | None]:
    """One child per item, each as its `${ITEM}` text, or a single `None` for a plain `call:`.

    Static items are expanded (an object becomes compact JSON with sorted keys, as Go marshals
    a map); a text (`${VAR}`, an output) is split as Dagu splits it (`separated_values`).
    Raises ValueError with Dagu's message for no items or more than `MAX_PARALLEL_ITEMS`.
    """
    if step.parallel is None:
        return [None]
    items = step.parallel.items
    texts: list[str | None] = []
    if isinstance(items, str):
        texts.extend(separated_values(ex.expand(items, scope, step_refs=step_refs)))
    else:
        for item in items:
            if isinstance(item, dict):
                values = {k: ex.expand(v, scope, step_refs=step_refs) for k, v in item.items()}
                texts.append(_go_json(values))
            else:
                texts.append(ex.expand(item, scope, step_refs=step_refs))
    if not texts:
        raise ValueError("parallel execution requires at least one item")
    if len(texts) > MAX_PARALLEL_ITEMS:
        raise ValueError(
            f"parallel execution exceeds maximum limit: {len(texts)} items "
            f"(max: {MAX_PARALLEL_ITEMS})"
        )
    return texts


def call_runs(
    step: Any, scope: Mapping[str, str], step_refs: Mapping[str, Mapping[str, str]]
) -> list[tuple[str | None, Pairs]]:
    """(item, params) of every child of the step, all resolved before the first starts; items
    with the same params are one child, as in Dagu (its sub-run id comes from the params).
    Raises ValueError as `call_items` does."""
    runs: dict[str, tuple[str | None, Pairs]] = {}
    for item in call_items(step, scope, step_refs):
        pairs = call_params(step, item, scope, step_refs)
        runs.setdefault(params_text(pairs), (item, pairs))
    return list(runs.values())


def separated_values(text: str) -> list[str]:
    """A text split into items as Dagu's `ParseSeparatedValues` does: a JSON array (its
    non-string members as compact JSON), a JSON object as one item, else one item per line,
    else `"quoted"` items and words, else by the most frequent of tab, `|`, `;`, `,` (the
    first of them wins a tie), else words."""
    s = text.strip()
    if not s:
        return []
    parsed = _json_or_none(s)
    if parsed is not None and s[0] in "[{":
        if isinstance(parsed, list):
            return [v if isinstance(v, str) else _go_json(v) for v in parsed]
        return [s]
    if "\n" in s or "\r" in s:
        return [line.strip() for line in re.split(r"[\r\n]+", s) if line.strip()]
    if s.count('"') >= 2 and (s.startswith('"') or s.endswith('"') or '" ' in s or ' "' in s):
        return _quoted_values(s)
    best, separator = 0, ""
    for sep in ("\t", "|", ";"):
        if s.count(sep) > best:
            best, separator = s.count(sep), sep
    if s.count(",") > best:
        separator = ","
    if separator:
        return [part.strip() for part in s.split(separator) if part.strip()]
    return [s] if parsed is not None else s.split()


def _quoted_values(s: str) -> list[str]:
    """`"item one" two` as Dagu's `parseQuotedStrings` reads it: quoted runs and bare words."""
    return [quoted or bare for quoted, bare in re.findall(r'"([^"]*)"?|([^\s"]+)', s)]


def _json_or_none(s: str) -> Any:
    try:
        return json.loads(s)
    except ValueError:
        return None


def _go_json(value: Any) -> str:
    """JSON as Go's `json.Marshal` writes it: compact, map keys sorted, no ASCII escaping."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


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


# Dagu's params tokenizer (`spec/params.go` paramRegex): `NAME=` is optional; a value is a
# "quoted" text (with \" inside), a `backtick` command, or a run of other characters.
_PARAM_TOKEN = re.compile(r'(?:([^\s=]+)=)?("(?:\\"|[^"])*"|`(?:\\"|[^"]*)`|[^"\s]+)')


def dagu_params(text: str) -> Pairs:
    """A params text read as Dagu reads `-- PARAMS`: a JSON object gives its keys (sorted),
    a JSON array its members, anything else `_PARAM_TOKEN` tokens (quotes removed)."""
    s = text.strip()
    if (s.startswith("{") and s.endswith("}")) or (s.startswith("[") and s.endswith("]")):
        parsed = _json_or_none(s)
        if isinstance(parsed, dict):
            return _named(parsed)
        if isinstance(parsed, list):
            pairs: Pairs = []
            for v in parsed:
                pairs.extend(_named(v) if isinstance(v, dict) else [(None, _param_value(v))])
            return pairs
    return [_unquote(name, value) for name, value in _PARAM_TOKEN.findall(s)]


def _named(obj: Mapping[str, Any]) -> Pairs:
    return [(k, _param_value(obj[k])) for k in sorted(obj)]


def _param_value(value: Any) -> str:
    """A JSON param value as Go's `%v` prints it (strings as they are)."""
    return value if isinstance(value, str) else ex.go_format(value)


def _unquote(name: str, value: str) -> tuple[str | None, str]:
    if value.startswith('"'):
        value = value.strip('"').replace('\\"', '"')
    return (name or None), value


def call_params(
    step: Any,
    item: str | None,
    scope: Mapping[str, str],
    step_refs: Mapping[str, Mapping[str, str]],
) -> Pairs:
    """A child's params as (name or None for positional, value) pairs.

    The step's `params:` is split into pairs before anything is substituted, then each value
    is expanded with `${ITEM}`, unresolvable references dropped (Dagu quotes each value, so
    an item or variable holding spaces, quotes or JSON stays one param). Without `params:`,
    the item's text is read as the child reads params on its command line (`dagu_params`:
    words, `K=V`, or a JSON object's keys).
    """
    from model.spec import parse_params

    raw = step.params
    if raw is None:
        return dagu_params(item) if item is not None else []
    scope = {**scope, "ITEM": item} if item is not None else scope
    template = dagu_params(raw) if isinstance(raw, str) else parse_params(raw)
    # Dagu drops a reference it cannot resolve (`${NOPE}`, a JSON path or filter that fails)
    # from the params it records and passes: the child would drop it too (call_params_unknown)
    return [
        (key, ex.expand(value, scope, step_refs=step_refs, keep_unknown=False))
        for key, value in template
    ]


def params_text(pairs: Pairs) -> str:
    """Pairs as one text, `K=v` or the bare value, space-separated (a sub-run's id seed)."""
    return " ".join(v if k is None else f"{k}={v}" for k, v in pairs)


def child_tokens(pairs: Pairs) -> list[str]:
    """Pairs as `dagloop start -- …` arguments that the child reads back as the same pairs
    (`model.loader.parse_param_overrides` re-splits an argument with an inner blank, so such
    an argument is shell-quoted whole)."""
    tokens = (value if key is None else f"{key}={value}" for key, value in pairs)
    return [shlex.quote(t) if " " in t.strip() else t for t in tokens]


def call_argv(
    *,
    run_id: str,
    parent: str,
    root: str,
    target: list[str],
    params: list[str],
    inherit_secrets: bool = False,
) -> list[str]:
    """The command line of a child run: `dagloop start` printing its result as JSON (and
    reading the parent's secret values from stdin with `inherit_secrets`)."""
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
        *(["--inherit-secrets"] if inherit_secrets else []),
        *target,
        "--",
        *params,
    ]


def hand_on_secrets(pipe: IO[bytes], values: Sequence[str]) -> None:
    """Write a parent's secret values to a child's stdin (`dagloop start --inherit-secrets`
    reads them with `read_inherited_secrets`) and close it; a child that died early is
    ignored here (its exit is reaped as a failure)."""
    try:
        pipe.write(json.dumps(list(values)).encode())
        pipe.close()
    except OSError:
        pass


def read_inherited_secrets(stream: IO[str]) -> tuple[str, ...]:
    """The secret values a parent run wrote with `hand_on_secrets` (nothing if unreadable)."""
    try:
        values = json.loads(stream.read() or "[]")
    except (OSError, ValueError):
        return ()
    return tuple(str(v) for v in values) if isinstance(values, list) else ()


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


def calls_document(node: Node) -> tuple[str, str]:
    """The step's stdout once its children ended (JSON), and the step's error: Dagu's text
    for the first failed child (in item order), "" when none failed."""
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
    error = ""
    if failed:
        error = f"sub DAG run {failed[0]['dagRunId']} failed with status: {failed[0]['status']}"
    return json.dumps(doc, ensure_ascii=False, indent=2), error


def calls_partial(node: Node) -> bool:
    """Whether a child of the step's last execution ended partially succeeded: the step then
    ends partially succeeded too (Dagu's sub-DAG executor reports its child's status)."""
    return any(r["status"] == "partially_succeeded" for r in node.results)


def _child_outputs(doc: Mapping[str, Any]) -> dict[str, str]:
    """A sub-run's output variables by their own names (`GREETING`, not outputs.json's camelCase
    keys; `omit`ted ones included), sorted by name as Go's JSON encoder orders a map.

    Dagu 1.30.2 also lists `DAGU_CONTINUE_ON.<step>: "false"` for each step of the sub-run that
    failed without its `continueOn` tolerating it (observed: call_parallel_result_shape).
    """
    found: dict[str, str] = {}
    for n in doc.get("nodes") or []:
        for item in n.get("outputVariables") or []:
            key, sep, value = str(item).partition("=")
            if sep:
                found[key] = value
        if n.get("statusLabel") == "failed" and not _tolerated(n):
            found[f"DAGU_CONTINUE_ON.{n['step']['name']}"] = "false"
    return dict(sorted(found.items()))


def _tolerated(node: Mapping[str, Any]) -> bool:
    """Whether the step's `continueOn` lets the run go on after its failure (its output
    patterns are taken as matched: the caller cannot search the sub-run's log)."""
    cont = node["step"].get("continueOn") or {}
    return bool(
        cont.get("failure")
        or cont.get("markSuccess")
        or cont.get("output")
        or node.get("exitCode") in (cont.get("exitCode") or [])
    )
