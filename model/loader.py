"""DAG file → validated `Dag`: YAML parsing, base.yaml merge, chain wiring and every check.

Errors never escape as tracebacks: every problem of a file becomes a `LoadError` with the
file, the line (from PyYAML's node marks), the field path and what is wrong, and all of a
file's problems are reported together in one `DagLoadError`.

Called by the CLI (`validate`, `dry`, `start`), the controller's desired-state builder and
the API's DAG cache. Nothing here runs commands: env and params are evaluated at run time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from model.params import resolve_params as resolve_params
from model.spec import (
    NAME_PATTERN,
    DagSpec,
    HandlerOnSpec,
    StepSpec,
    fold_keys,
    param_token,
    parse_env_entries,
    parse_params,
    validate_name,
)
from model.specbase import HANDLER_STEP_NAMES, SUPPORTED_EXECUTORS, DagBehaviour

_REREAD_TAGS = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")

try:  # the C loader is ~10x faster; fall back when libyaml is missing
    from yaml import CSafeLoader as _YamlLoader
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeLoader as _YamlLoader  # type: ignore[assignment]


class _DagYamlLoader(_YamlLoader):
    """PyYAML reads YAML 1.1; Dagu's parser (goccy/go-yaml) differs on plain scalars: only
    true/false (any case form) are booleans, so `yes`, `no`, `on`, `off` stay text; `12:30`
    is text, not a base-60 number; `0o10` is octal as `010` is (yaml_bool_words,
    yaml_number_words)."""


# the base resolvers without the ones re-read here (assigned after the class: the stubs
# declare the attribute as an instance variable)
_DagYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _REREAD_TAGS]
    for first, resolvers in _YamlLoader.yaml_implicit_resolvers.items()
}
_DagYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_DagYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(
        r"""^(?:[-+]?0b[0-1_]+
        |[-+]?0o?[0-7_]+
        |[-+]?(?:0|[1-9][0-9_]*)
        |[-+]?0x[0-9a-fA-F_]+)$""",
        re.X,
    ),
    list("-+0123456789"),
)
_DagYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
        |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)

DEFAULT_MAX_FILE_BYTES = 1024 * 1024
STEP_NAME_MAX_LENGTH = 40  # Dagu's core.ValidateSteps (ErrStepNameTooLong)
# Expanded node count above which a document is refused (YAML alias bombs).
MAX_EXPANDED_NODES = 200_000

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadError:
    """One problem in a DAG file."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON form for `validate --json` and the API."""
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}


class DagLoadError(Exception):
    """A DAG file could not be loaded; `errors` lists every problem found."""

    def __init__(self, errors: Sequence[LoadError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


@dataclass(frozen=True)
class Dag(DagBehaviour):
    """A loaded DAG: its canonical spec plus where it came from.

    `spec.steps` have final names and explicit `depends` (chain wiring applied).
    `local_dags` are the later documents of the same file, callable with `call:`.
    """

    spec: DagSpec
    name: str
    location: Path | None
    source: str = ""
    local_dags: Mapping[str, Dag] = field(default_factory=dict)


# --------------------------------------------------------------------------- YAML


class _Document:
    """One parsed YAML document: data plus a lazily built path → line index."""

    def __init__(self, node: yaml.Node, data: Any) -> None:
        self.node = node
        self.data = data
        self._lines: dict[Path_, int] | None = None
        # Problems found while parsing (duplicate keys), reported with the others.
        self.problems: list[tuple[Path_, str]] = []

    def line_of(self, path: Path_) -> int:
        if self._lines is None:
            self._lines = {}
            _index_lines(self.node, (), self._lines)
        path = _folded(path)
        for n in range(len(path), -1, -1):
            line = self._lines.get(path[:n])
            if line is not None:
                return line
        mark = self.node.start_mark
        return mark.line + 1 if mark is not None else 1


def _folded(path: Path_) -> Path_:
    """A path with its keys in lower case: the line index matches keys as Dagu does, in any
    case (`fold_keys`), so an error about `timeoutSec` finds the user's `TimeoutSec`."""
    return tuple(part.lower() if isinstance(part, str) else part for part in path)


def _index_lines(node: yaml.Node, path: Path_, out: dict[Path_, int], line: int = 0) -> None:
    if path in out:
        return  # aliases: the first occurrence is enough
    out[path] = line or (node.start_mark.line + 1 if node.start_mark is not None else 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value.lower() if isinstance(key, yaml.ScalarNode) else str(key)
            # A key's line is where the user looks, not where its value starts.
            _index_lines(value, (*path, k), out, key.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, i), out)


def _expanded_size(
    node: yaml.Node, memo: dict[int, int], duplicates: list[tuple[yaml.Node, yaml.Node]]
) -> int:
    """Number of nodes after alias expansion, computed without expanding.

    On the way it collects duplicate mapping keys as (first key node, repeated key node):
    PyYAML silently keeps the last value, which hides a mistake (two `command:` keys).
    """
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # guards against recursive aliases
    total = 1
    if isinstance(node, yaml.MappingNode):
        keys: dict[str, yaml.Node] = {}
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value != "<<":
                if k.value in keys:
                    duplicates.append((keys[k.value], k))
                else:
                    keys[k.value] = k
            total += _expanded_size(k, memo, duplicates) + _expanded_size(v, memo, duplicates)
            if total > MAX_EXPANDED_NODES:
                break
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            total += _expanded_size(item, memo, duplicates)
            if total > MAX_EXPANDED_NODES:
                break
    memo[key] = total
    return total


def _key_path(node: yaml.Node, target: yaml.Node, path: Path_ = ()) -> Path_ | None:
    """The path of mapping key node `target` under `node` (only called for errors)."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            name = k.value if isinstance(k, yaml.ScalarNode) else str(k)
            if k is target:
                return (*path, name)
            found = _key_path(v, target, (*path, name))
            if found is not None:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _key_path(item, target, (*path, i))
            if found is not None:
                return found
    return None


def _parse_documents(text: str, file: str) -> list[_Document]:
    loader = _DagYamlLoader(text)
    docs: list[_Document] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            duplicates: list[tuple[yaml.Node, yaml.Node]] = []
            if _expanded_size(node, {}, duplicates) > MAX_EXPANDED_NODES:
                raise DagLoadError(
                    [
                        LoadError(
                            file,
                            node.start_mark.line + 1,
                            "",
                            f"document too large after alias expansion "
                            f"(more than {MAX_EXPANDED_NODES} nodes)",
                        )
                    ]
                )
            doc = _Document(node, loader.construct_document(node))
            for first, again in duplicates:
                path = _key_path(node, again) or ()
                doc.problems.append(
                    (path, f"duplicate key (first defined on line {first.start_mark.line + 1})")
                )
            docs.append(doc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join((exc.problem or exc.context or "invalid YAML").split())
        raise DagLoadError([LoadError(file, line, "", f"invalid YAML: {problem}")]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML refuses, e.g. a control char
        char = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or "\0")
        message = f"invalid YAML: character U+{char:04X} is not allowed"
        where = text[: exc.position].count("\n") + 1
        raise DagLoadError([LoadError(file, where, "", message)]) from None
    except yaml.YAMLError as exc:
        summary = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid YAML"
        raise DagLoadError([LoadError(file, None, "", f"invalid YAML: {summary}")]) from None
    except RecursionError:
        raise DagLoadError([LoadError(file, None, "", "invalid YAML: nested too deeply")]) from None
    finally:
        loader.dispose()
    return docs


# --------------------------------------------------------------------------- base.yaml


_APPENDED_LISTS = ("tags", "dotenv")
_MERGED_MAPS = ("handlerOn", "smtp", "errorMail", "infoMail", "waitMail", "workerSelector")


def merge_base(base: Mapping[str, Any], doc: Mapping[str, Any]) -> dict[str, Any]:
    """Merge a DAG document over base.yaml as Dagu does (reference §1.3).

    Scalars and maps in the document override base (maps field by field); `env`, `tags`
    and `dotenv` are appended (base first); `mailOn` is replaced as a whole.
    """
    out: dict[str, Any] = dict(base)
    for key, value in doc.items():
        if key not in out or value is None:
            out[key] = value if key not in out or value is not None else out[key]
            continue
        old = out[key]
        if key == "env":
            out[key] = [{k: v} for k, v in (*parse_env_entries(old), *parse_env_entries(value))]
        elif key in _APPENDED_LISTS:
            out[key] = _as_list(old) + _as_list(value)
        elif key in _MERGED_MAPS and isinstance(old, dict) and isinstance(value, dict):
            out[key] = {**old, **value}
        else:
            out[key] = value
    return out


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


# --------------------------------------------------------------------------- steps


def _flatten_steps(raw: Any) -> tuple[list[Any], list[Path_], list[int]]:
    """Flatten nested parallel groups: (steps, their YAML paths, their group numbers)."""
    steps: list[Any] = []
    paths: list[Path_] = []
    groups: list[int] = []
    if isinstance(raw, dict):
        for key, step in raw.items():
            s = step
            if isinstance(s, dict) and not any(str(k).lower() == "name" for k in s):
                s = {**s, "name": str(key)}
            steps.append(s)
            paths.append(("steps", str(key)))
            groups.append(len(groups))
        return steps, paths, groups
    if not isinstance(raw, list):
        return [], [], []
    for i, item in enumerate(raw):
        if isinstance(item, list):
            for j, sub in enumerate(item):
                steps.append(sub)
                paths.append(("steps", i, j))
                groups.append(i)
        else:
            steps.append(item)
            paths.append(("steps", i))
            groups.append(i)
    return steps, paths, groups


def _placeholder_step(raw: Any) -> StepSpec:
    """Stand-in for a step that failed validation, so the other checks still run.

    It keeps the user's name and depends when they are plain strings: a reference to an
    invalid step is then not reported a second time as "unknown step".
    """
    name = ""
    depends: list[str] | None = None
    if isinstance(raw, dict):
        if isinstance(raw.get("name"), str):
            name = raw["name"]
        dep = raw.get("depends")
        if isinstance(dep, str):
            depends = [dep]
        elif isinstance(dep, list) and all(isinstance(d, str) for d in dep):
            depends = list(dep)
    return StepSpec.model_construct(name=name, depends=depends, command=["<invalid>"])


def auto_step_name(step: StepSpec, index: int) -> str:
    """Dagu 1.30.2's name for the unnamed step at position `index` (0-based): `<kind>_<index+1>`.

    The kind is the explicit executor type, else `docker` (a `container:`), `parallel`, `dag`
    (a `call:`), `script`, `cmd`, else `step`. Dagu does not look for a free name: when a
    user-named step already has it, the DAG is refused as a duplicate name, so we do the same.
    """
    # Not `step.executor_type`: that reports "dag" for every `call:`, parallel ones included.
    explicit = step.executor.type if step.executor is not None else ""
    if explicit:
        prefix = str(explicit)
    elif step.container is not None:
        prefix = "docker"
    elif step.parallel is not None:
        prefix = "parallel"
    elif step.call is not None:
        prefix = "dag"
    elif step.script:
        prefix = "script"
    elif step.command:
        prefix = "cmd"
    else:
        prefix = "step"
    return f"{prefix}_{index + 1}"


def _wire_steps(steps: Sequence[StepSpec], groups: list[int], *, chain: bool) -> list[StepSpec]:
    """Give every step a name and, in chain mode, the implicit `depends`."""
    named: list[StepSpec] = []
    for i, step in enumerate(steps):
        if not step.name:
            step = step.model_copy(update={"name": auto_step_name(step, i)})
        named.append(step)
    if not chain:
        return [s if s.depends is not None else s.model_copy(update={"depends": []}) for s in named]
    wired: list[StepSpec] = []
    previous_group: list[str] = []
    current_group: list[str] = []
    current = None
    for step, group in zip(named, groups, strict=True):
        if group != current:
            previous_group, current_group, current = current_group or previous_group, [], group
        if step.depends is None:
            step = step.model_copy(update={"depends": list(previous_group)})
        current_group.append(step.name)
        wired.append(step)
    return wired


# --------------------------------------------------------------------------- checks

NOT_SUPPORTED = "not supported by dagloop"
_NO_CONTAINERS = "dagloop has no container runtime"
# DAG-level fields of features dagloop does not run: key -> (attribute, reason of the refusal).
_UNSUPPORTED_DAG_FIELDS = {
    "container": ("container", _NO_CONTAINERS),
    "registryAuths": ("registry_auths", _NO_CONTAINERS),
    "ssh": ("ssh", "dagloop has no ssh executor"),
    "llm": ("llm", "dagloop has no LLM (chat) executor"),
    "otel": ("otel", "dagloop exports no OpenTelemetry traces"),
}
# what `otel:` asks for when it only switches the export off: nothing to run (Dagu's default)
_OTEL_OFF: tuple[dict[str, object], ...] = ({"enabled": False}, {"enabled": None}, {})
# Executor types by what a step of that type may hold (Dagu 1.30.2's capabilities).
_NO_COMMAND = frozenset({"mail", "dag", "subworkflow", "parallel"})
_NO_SHELL = frozenset({"http", "jq", "mail", "dag", "subworkflow", "parallel"})
_SINGLE_COMMAND = frozenset({"http", "jq"})
_SUB_DAG = frozenset({"", "dag", "subworkflow", "parallel"})


def unsupported_fields(spec: DagSpec) -> list[tuple[str, str]]:
    """(field, reason) for each DAG-level field set that dagloop does not run."""
    return [
        (field, reason)
        for field, (attribute, reason) in _UNSUPPORTED_DAG_FIELDS.items()
        if getattr(spec, attribute) is not None and not (field == "otel" and spec.otel in _OTEL_OFF)
    ]


def step_problems(step: StepSpec) -> list[tuple[str, str]]:
    """(field, message) for each thing in a step that dagloop does not run or that Dagu 1.30.2
    refuses for the step's executor type (checked on steps and handlers alike)."""
    kind = step.executor_type
    out: list[tuple[str, str]] = []
    if kind not in SUPPORTED_EXECUTORS:
        reason = f"executor type {kind!r}: dagloop runs shell, http, jq, mail and sub-DAG steps"
        out.append(("type", f"{NOT_SUPPORTED} ({reason})"))
    if step.container is not None:
        out.append(("container", f"{NOT_SUPPORTED} ({_NO_CONTAINERS})"))
    for key, value in (("llm", step.llm), ("messages", step.messages)):
        if value is not None:
            out.append((key, f"{NOT_SUPPORTED} (no LLM (chat) executor)"))
    if step.shell and Path(step.shell[0]).name == "nix-shell":
        out.append(("shell", f"{NOT_SUPPORTED} (nix-shell)"))
    if step.stdout and step.stdout == step.stderr:
        message = f"stdout and stderr cannot point to the same file {step.stdout!r}"
        out.append(("stderr", message))
    if step.shell_packages:
        out.append(("shellPackages", f"{NOT_SUPPORTED} (packages for nix-shell)"))
    if kind in _NO_COMMAND and step.command:
        out.append(("command", f'executor type "{kind}" does not support command field'))
    if kind in _NO_COMMAND and step.script:
        out.append(("script", f'executor type "{kind}" does not support script field'))
    if kind in _NO_SHELL and step.shell:
        out.append(("shell", f'executor type "{kind}" does not support shell configuration'))
    if kind in _SINGLE_COMMAND and len(step.command) > 1:
        # Dagu 1.30.2 refuses this when it builds the DAG, naming the executor.
        out.append(("command", f'executor type "{kind}" only supports a single command'))
    if step.call is None and kind in _SUB_DAG and kind:
        # Dagu 1.30.2 accepts this and has nothing to call at run time.
        out.append(("type", f"{NOT_SUPPORTED} (executor type {kind!r} without 'call')"))
    if step.call is not None and kind not in _SUB_DAG:
        out.append(("call", f'executor type "{kind}" does not support sub-DAG execution'))
    return out


def _find_cycle(steps: Sequence[StepSpec], resolve: Mapping[str, str]) -> list[str] | None:
    """A dependency cycle as [a, b, …, a], or None. Iterative: deep graphs must not recurse."""
    graph = {s.name: [resolve[d] for d in s.depends or [] if d in resolve] for s in steps}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in graph:
        if root in state:
            continue
        state[root] = 1
        path = [root]
        todo = [iter(graph[root])]
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                todo.pop()
                state[path.pop()] = 2
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                todo.append(iter(graph[nxt]))
    return None


_LOCAL_OR_PATH = re.compile(r"\$|/|\.ya?ml$")


def _call_problem(target: str) -> str | None:
    """What is wrong with a `call:` target, or None when it could name a DAG.

    A target that is not a local document may still be a file in the DAGs directory,
    which the loader cannot see: only a target that could never be a file is refused.
    """
    if not target.strip():
        return "must name a DAG"
    if _LOCAL_OR_PATH.search(target) or NAME_PATTERN.match(target):
        return None
    return f"{target!r} is neither a DAG name nor a file path"


def _semantic_errors(
    steps: Sequence[StepSpec], explicit: Sequence[bool], invalid: Sequence[bool]
) -> list[tuple[Path_, str]]:
    """Cross-step checks: names, ids, something to run, `depends` and cycles.

    `explicit[i]` says step i's `depends` came from the user (not chain wiring);
    `invalid[i]` marks a placeholder for a step whose own errors are already reported.
    """
    errs: list[tuple[Path_, str]] = []
    seen: dict[str, int] = {}
    ids: dict[str, int] = {}
    # an id may not be the name of another step, before or after it (Dagu 1.30.2:
    # "step ID 'b' conflicts with another step's name")
    names: dict[str, int] = {}
    for i, step in enumerate(steps):
        names.setdefault(step.name, i)
    for i, step in enumerate(steps):
        if step.name in seen:
            errs.append((("steps", i, "name"), f"duplicate step name {step.name!r}"))
        seen.setdefault(step.name, i)
        if len(step.name) > STEP_NAME_MAX_LENGTH:
            message = f"step name longer than {STEP_NAME_MAX_LENGTH} characters"
            errs.append((("steps", i, "name"), message))
        if invalid[i]:
            continue
        if step.id is not None:
            if step.id in ids:
                errs.append((("steps", i, "id"), f"duplicate step id {step.id!r}"))
            elif step.id in names and names[step.id] != i:
                errs.append((("steps", i, "id"), f"id {step.id!r} clashes with a step name"))
            ids.setdefault(step.id, i)
        errs.extend((("steps", i, key), message) for key, message in step_problems(step))
        if not step.command and not step.script and step.executor is None and step.call is None:
            errs.append(
                (("steps", i), "step has nothing to run: no command, script, call or executor")
            )
        if step.parallel is not None and step.call is None:
            errs.append((("steps", i, "parallel"), "'parallel' needs 'call'"))
        if step.call is not None and (problem := _call_problem(step.call)):
            errs.append((("steps", i, "call"), problem))
    resolve = {s.name: s.name for s in steps}
    resolve.update({s.id: s.name for s in steps if s.id})
    self_dependent = False
    for i, step in enumerate(steps):
        if not explicit[i]:
            continue  # chain wiring only names real steps
        for dep in step.depends or []:
            if dep not in resolve:
                errs.append((("steps", i, "depends"), f"unknown step {dep!r}"))
            elif resolve[dep] == step.name:
                errs.append((("steps", i, "depends"), "a step cannot depend on itself"))
                self_dependent = True
    # With duplicate names the graph is ambiguous: the duplicate is the error to fix first.
    if not self_dependent and len(seen) == len(steps):
        cycle = _find_cycle(steps, resolve)
        if cycle:
            first = next(i for i, s in enumerate(steps) if s.name == cycle[0])
            errs.append((("steps", first, "depends"), "dependency cycle: " + " -> ".join(cycle)))
    return errs


# --------------------------------------------------------------------------- entry points


def _user_path(data: Any, loc: Sequence[str | int]) -> Path_:
    """Keep only the parts of a pydantic error location that exist in the user's data."""
    out: list[str | int] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and isinstance(part, str) and part not in current:
            # the user may have spelled the key in another case (see `fold_keys`)
            lower = part.lower()
            part = next((k for k in current if isinstance(k, str) and k.lower() == lower), part)
        if isinstance(current, dict) and part in current:
            current = current[part]
            out.append(part)
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
            out.append(part)
    return tuple(out)


def _message(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required field is missing"
    msg = str(err.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg[:1].lower() + msg[1:]


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_$-]+$")


def _dotted(path: Path_) -> str:
    """`steps[0].retryPolicy.limit`; odd keys quoted (`env['a b']`) so it stays one line."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.match(part):
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else part
    return out


def _named(spec: DagSpec) -> HandlerOnSpec:
    """The handlers, each with a name: its own, else Dagu's `on<Event>` name."""
    updates = {
        event: step.model_copy(update={"name": HANDLER_STEP_NAMES[event]})
        for event, step in spec.handler_on.items()
        if not step.name
    }
    return spec.handler_on.model_copy(update=updates) if updates else spec.handler_on


def _key_line(doc: _Document, path: Path_) -> int:
    """Line of the last occurrence of a duplicated key: the index keeps the first."""
    node = doc.node
    line = doc.line_of(path)
    for part in path:
        if isinstance(node, yaml.MappingNode):
            matches = [(k, v) for k, v in node.value if getattr(k, "value", None) == part]
            if not matches:
                break
            line = matches[-1][0].start_mark.line + 1
            node = matches[-1][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part]
        else:
            break
    return line


def _pydantic_errors(
    exc: ValidationError, data: Any, doc: _Document, *, file: str, prefix: Path_ = ()
) -> list[LoadError]:
    """One `LoadError` per pydantic error, located in the user's YAML.

    `data` is what was validated and `prefix` its path in the document. A location that
    is not in `data` (a field inherited from base.yaml, a missing key) is cut back to the
    nearest part the user wrote for the line, while the field path still names it.
    """
    out: list[LoadError] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors():
        loc = tuple(err["loc"])
        kind = err.get("type", "")
        path = _user_path(data, loc)
        if not prefix and loc and isinstance(data, dict) and not path:
            path = (str(loc[0]),)  # inherited from base.yaml
        field_path = path
        if kind == "missing" and loc:
            field_path = (*path, loc[-1])
        message = _message(err)
        if kind == "extra_forbidden" and loc:
            message = f"unknown key {str(loc[-1])!r}"
        dotted = _dotted(prefix + field_path)
        if (dotted, message) in seen:
            continue
        seen.add((dotted, message))
        out.append(LoadError(file, doc.line_of(prefix + path), dotted, message))
    return out


def _build(
    data: Any,
    doc: _Document,
    *,
    file: str,
    default_name: str | None,
    location: Path | None,
    source: str,
    base: Mapping[str, Any] | None,
    local: bool = False,
) -> tuple[Dag | None, list[LoadError]]:
    """Validate one document; (the Dag, []) or (None, every problem found)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, [LoadError(file, doc.line_of(()), "", "a DAG document must be a map")]
    # Keys in another case (`Steps`, `Env`) are Dagu's too: fold them before base.yaml merges.
    folded = fold_keys(data, DagSpec, "precondition")
    merged = merge_base(fold_keys(base, DagSpec, "precondition"), folded) if base else folded
    raw_steps_value = merged.pop("steps", None)
    errors: list[LoadError] = []

    # Top level and steps are validated apart, so a bad step does not hide other problems.
    spec: DagSpec | None = None
    try:
        spec = DagSpec.model_validate(merged)
    except ValidationError as exc:
        errors.extend(_pydantic_errors(exc, data, doc, file=file))

    raw_steps, step_paths, groups = _flatten_steps(raw_steps_value)
    if raw_steps_value is not None and not isinstance(raw_steps_value, list | dict):
        errors.append(
            LoadError(
                file,
                doc.line_of(("steps",)),
                "steps",
                "expected a list of steps or a map of name to step",
            )
        )
    elif not raw_steps and not data:
        # Only an empty document is refused (Dagu: "no DAGs found"); a DAG without steps is
        # valid in Dagu 1.30.2 and its run succeeds at once (handlers still run).
        errors.append(
            LoadError(file, doc.line_of(("steps",)), "steps", "at least one step is required")
        )
    parsed: list[StepSpec] = []
    invalid: list[bool] = []
    for raw, path in zip(raw_steps, step_paths, strict=True):
        if isinstance(raw, str) and isinstance(path[-1], str):
            # Dagu 1.30.2 decodes a map-form step into a struct: no command shorthand there.
            message = "a step of the map form must be a map, got a string"
            errors.append(LoadError(file, doc.line_of(path), _dotted(path), message))
            parsed.append(_placeholder_step({"name": path[-1]}))
            invalid.append(True)
            continue
        try:
            parsed.append(StepSpec.model_validate(raw))
            invalid.append(False)
        except ValidationError as exc:
            errors.extend(_pydantic_errors(exc, raw, doc, file=file, prefix=path))
            parsed.append(_placeholder_step(raw))
            invalid.append(True)

    name = spec.name if spec is not None and spec.name else (default_name or "")
    if spec is not None or "name" not in data:
        problem: str | None
        if not name:
            problem = "a local sub-DAG document needs a name" if local else "a name is required"
        else:
            problem = validate_name(name)
        if problem:
            errors.append(LoadError(file, doc.line_of(("name",)), "name", problem))

    for path, message in doc.problems:
        errors.append(LoadError(file, _key_line(doc, path), _dotted(path), message))
    if spec is not None:
        for key, reason in unsupported_fields(spec):
            message = f"{NOT_SUPPORTED} ({reason})"
            errors.append(LoadError(file, doc.line_of((key,)), key, message))
        for event, handler in spec.handler_on.items():
            for key, message in step_problems(handler):
                path = ("handlerOn", event, key)
                errors.append(LoadError(file, doc.line_of(path), _dotted(path), message))
            if not (handler.command or handler.script or handler.executor or handler.call):
                path = ("handlerOn", event)
                errors.append(
                    LoadError(
                        file,
                        doc.line_of(path),
                        _dotted(path),
                        "handler has nothing to run: no command, script, call or executor",
                    )
                )
    chain = (spec.type if spec is not None else merged.get("type", "chain")) != "graph"
    explicit = [s.depends is not None for s in parsed]
    steps = _wire_steps(parsed, groups, chain=chain)
    for path, message in _semantic_errors(steps, explicit, invalid):
        if path[:1] == ("steps",) and len(path) > 1 and isinstance(path[1], int):
            path = step_paths[path[1]] + path[2:]
        errors.append(LoadError(file, doc.line_of(path), _dotted(path), message))
    if errors or spec is None:
        errors.sort(key=lambda e: e.line or 0)
        return None, errors
    spec = spec.model_copy(update={"steps": steps, "name": name, "handler_on": _named(spec)})
    return Dag(spec=spec, name=name, location=location, source=source), []


def load_base(
    path: Path | None, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> dict[str, Any] | None:
    """Read base.yaml as a raw map (validated as part of each DAG); None when absent.

    Raises `DagLoadError` when the file cannot be read or a field is invalid.
    """
    if path is None or not path.is_file():
        return None
    file = str(path)
    docs = _parse_documents(_read_text(path, max_bytes), file)
    if not docs or docs[0].data is None:
        return None
    doc = docs[0]
    data = doc.data
    if not isinstance(data, dict):
        raise DagLoadError([LoadError(file, doc.line_of(()), "", "base config must be a map")])
    try:
        DagSpec.model_validate({k: v for k, v in data.items() if k != "steps"})
    except ValidationError as exc:
        raise DagLoadError(_pydantic_errors(exc, data, doc, file=file)) from None
    return data


def _read_text(path: Path, max_bytes: int) -> str:
    """The file's text, refusing files over `max_bytes` without reading them whole."""
    file = str(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise DagLoadError([LoadError(file, None, "", f"cannot read: {exc.strerror}")]) from None
    if len(raw) > max_bytes:
        message = f"file is larger than the {max_bytes} byte limit"
        raise DagLoadError([LoadError(file, None, "", message)])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DagLoadError([LoadError(file, line, "", "file is not valid UTF-8")]) from None


def load_dag_text(
    text: str,
    *,
    file: str = "<string>",
    location: Path | None = None,
    base: Mapping[str, Any] | None = None,
) -> Dag:
    """Load a DAG from YAML text; raises `DagLoadError` with every problem found."""
    docs = _parse_documents(text, file)
    default_name = location.stem if location is not None else None
    if not docs:
        docs = [_Document(yaml.MappingNode("tag:yaml.org,2002:map", []), {})]
    main, errors = _build(
        docs[0].data,
        docs[0],
        file=file,
        default_name=default_name,
        location=location,
        source=text,
        base=base,
    )
    local: dict[str, Dag] = {}
    for doc in docs[1:]:
        sub, sub_errors = _build(
            doc.data,
            doc,
            file=file,
            default_name=None,
            location=location,
            source="",
            base=base,
            local=True,
        )
        errors.extend(sub_errors)
        if sub is not None:
            if sub.name in local or (main is not None and sub.name == main.name):
                errors.append(
                    LoadError(
                        file, doc.line_of(("name",)), "name", f"duplicate DAG name {sub.name!r}"
                    )
                )
            local[sub.name] = sub
    if errors or main is None:
        raise DagLoadError(errors)
    if local:
        main = Dag(spec=main.spec, name=main.name, location=location, source=text, local_dags=local)
    return main


def load_dag(
    path: Path,
    *,
    base: Mapping[str, Any] | None = None,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> Dag:
    """Load a DAG file; raises `DagLoadError` (never another exception) on any problem."""
    text = _read_text(path, max_bytes)
    return load_dag_text(text, file=str(path), location=path.resolve(), base=base)


# --------------------------------------------------------------------------- params


def parse_param_overrides(tokens: Sequence[str]) -> list[tuple[str | None, str]]:
    """CLI params (`-- K=V a b`, or `-p 'K=V a'`) as (name or None, value) pairs."""
    out: list[tuple[str | None, str]] = []
    for token in tokens:
        out.extend(parse_params(token) if " " in token.strip() else [param_token(token)])
    return out
