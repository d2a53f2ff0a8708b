"""The run's variables: the working directory, the base environment of every step (filtered
OS env, DAG `env:`, dotenv files, params), the step outputs and `${id.stdout}`-style step
references published as steps end, and the expansion scope of a step.

Called by the runner (`controller.engine.runner`), which owns one `RunVars` per run; the alerts
of `controller.engine.launch` read `dag_vars`, `dotenv_values` and `expand_text` through it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.engine import expand as ex
from controller.engine.executors.jq import encode_gojq
from controller.engine.graph import Node
from model.params import resolve_params

if TYPE_CHECKING:
    from controller.secrets import SecretMasker


def dag_workdir(
    dag: Any,
    settings: Any,
    *,
    variables: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """The DAG's working directory: `workingDir` (relative to the DAG file), the settings'
    `work_dir`, else the DAG file's directory (the current one for a DAG without a file).

    `~` and `$VAR`/`${VAR}` in `workingDir` are expanded from `variables` (the DAG env, dotenv
    and params, as Dagu does), then `environ`."""
    wd = dag.spec.working_dir
    base = dag.location.parent if dag.location is not None else Path.cwd()
    if wd:
        text = ex.expand(os.path.expanduser(wd), variables or {}, fallback=environ)
        p = Path(os.path.expanduser(text))
        return p if p.is_absolute() else base / p
    if settings.work_dir is not None:
        return Path(settings.work_dir)
    return base


class SecretError(ValueError):
    """A secret of the DAG cannot be resolved (missing variable or file, unknown provider)."""


def resolve_secrets(
    secrets: Sequence[Mapping[str, Any]], *, variables: Mapping[str, str], workdir: Path
) -> dict[str, str]:
    """The values of a DAG's `secrets:` by name, as Dagu 1.30.2 resolves them: `env` reads
    `variables` (the OS env, the DAG's `env:` and dotenv), `file` reads the whole file
    (untrimmed), a relative `key` against the working directory. Raises SecretError."""
    values: dict[str, str] = {}
    for item in secrets:
        name, provider, key = (str(item.get(k) or "") for k in ("name", "provider", "key"))
        values[name] = _resolve_secret(name, provider, key, variables, workdir)
    return values


def _resolve_secret(
    name: str, provider: str, key: str, variables: Mapping[str, str], workdir: Path
) -> str:
    """One secret's value; the error texts are Dagu's."""
    if provider == "env":
        if key not in variables:
            raise SecretError(
                f'failed to resolve secret "{name}" from provider "env": '
                f'environment variable "{key}" is not set'
            )
        return variables[key]
    if provider == "file":
        path = Path(os.path.expanduser(key))
        try:
            # Dagu keeps the content as it is, trailing newline included
            return (path if path.is_absolute() else workdir / path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SecretError(
                f'failed to resolve secret "{name}" from provider "file": '
                f"secret file not found: {key} ({exc.strerror})"
            ) from None
    raise SecretError(f"unknown secret provider: {provider}")


def visible_outputs(
    name: str,
    depends: Mapping[str, Sequence[str]],
    published: Mapping[str, Mapping[str, str]],
) -> dict[str, str]:
    """The outputs step `name` sees: its ancestors', nearest first (Dagu 1.30.2).

    Dagu walks the graph breadth-first from the step through `depends` in the order listed
    and keeps the first value it meets for a name; a step that is not an ancestor is not
    seen, however early it ended (outputs_same_name, outputs_ancestors), and a repeated step
    does not see its own previous output (repeat_output_own). `published` maps a step to
    its outputs.
    """
    seen: dict[str, str] = {}
    visited = {name}
    queue = list(depends.get(name, ()))
    while queue:
        current = queue.pop(0)
        if current in visited:
            continue
        visited.add(current)
        for key, value in published.get(current, {}).items():
            seen.setdefault(key, value)
        queue.extend(depends.get(current, ()))
    return seen


# the integers Go's strconv.Atoi accepts
_GO_ATOI = re.compile(r"[+-]?[0-9]+")


class RunVars:
    """The variables of one run, filled by `build` and as steps publish their outputs."""

    def __init__(self, *, dag: Any, settings: Any, environ: Mapping[str, str]) -> None:
        self._dag = dag
        self._settings = settings
        self._environ = environ
        # before `build` only the OS environment expands it; `build` settles it
        self.workdir = dag_workdir(dag, settings, environ=environ)
        self.base_env: dict[str, str] = {}
        self.dag_vars: dict[str, str] = {}  # DAG env + dotenv + params (for expansion)
        self.outputs: dict[str, str] = {}  # every output so far, the last one winning
        self.published: dict[str, dict[str, str]] = {}  # step name -> its outputs
        self._depends = _depends_by_name(dag.spec.steps)
        self.dotenv_values: dict[str, str] = {}  # for masking secrets in alerts
        self.dotenv_errors: list[tuple[str, str]] = []  # (file, why) of each unparseable one
        self.policy_vars: dict[str, str] = {}  # what a text retryPolicy number sees
        self.params_resolved: dict[str, str] = {}
        self.secret_values: dict[str, str] = {}  # the DAG's `secrets:`, by name
        self.secret_masker: SecretMasker | None = None  # None: the DAG has no secrets
        self.inherited_secrets: tuple[str, ...] = ()  # a parent run's secret values
        self.step_refs: dict[str, dict[str, str]] = {}

    def _eval_params(
        self, pairs: Sequence[tuple[str, str]], dag_vars: Mapping[str, str], env: Mapping[str, str]
    ) -> dict[str, str]:
        """Params evaluated in order: each sees the DAG env and the earlier ones of `pairs`."""
        out: dict[str, str] = {}
        scope = dict(dag_vars)
        for key, value in pairs:
            v = ex.expand(value, scope, fallback=self._environ, keep_unknown=False)
            v = ex.eval_backticks(v, env={**env, **out}, cwd=str(self.workdir), strict=True)
            out[key] = scope[key] = v
        return out

    def build(self, params: Sequence[tuple[str, str]]) -> None:
        """Base env of every step: filtered OS env, DAGU_HOME, DAG env, dotenv, params.
        Raises ValueError (a failing backtick command of the DAG env or a param)."""
        environ, spec = self._environ, self._dag.spec
        env = ex.filtered_os_env(environ, secret_patterns=tuple(self._settings.secret_patterns))
        env["DAGU_HOME"] = str(self._settings.home)
        params = list(params)
        raw_params = {k: v for k, v in params}
        dag_vars: dict[str, str] = {}
        for key, value in spec.env:
            scope = {**raw_params, **dag_vars}
            v = ex.expand(value, scope, fallback=environ, keep_unknown=False)
            v = ex.eval_backticks(v, env={**env, **dag_vars}, cwd=str(self.workdir), strict=True)
            dag_vars[key] = v
            env[key] = v
        env_values = dict(dag_vars)
        self._settle_workdir({**raw_params, **dag_vars})
        # Dagu evaluates params when it loads the DAG, before the run reads the dotenv files:
        # a param sees the DAG env and earlier params, never a dotenv value.
        # The DAG's defaults are evaluated among themselves, the overrides (the command line,
        # a caller's params) among themselves, and then merged by name: a default built from
        # an overridden param keeps the default's value (`TARGET: ${ENV}-x` with `ENV=prod`
        # given is still `dev-x`, Dagu 1.30.2, params_override_derived).
        raw_defaults = dict(resolve_params(spec.params, []))
        overrides = [(k, v) for k, v in params if raw_defaults.get(k) != v]
        defaults = self._eval_params(list(raw_defaults.items()), dag_vars, env)
        given = self._eval_params(overrides, dag_vars, env)
        named = {key: given[key] if key in given else defaults[key] for key, _ in params}
        param_scope = {**dag_vars, **named}
        # dotenv files are relative to the working directory the env and params give
        self._settle_workdir(param_scope)
        self.dotenv_values = self._read_dotenv(spec.dotenv, param_scope)
        self.policy_vars = {**environ, **env_values, **self.dotenv_values}
        # dotenv overrides the DAG env; params override both
        for source in (self.dotenv_values, named):
            dag_vars.update(source)
            env.update(source)
        self._settle_workdir(dag_vars)
        # Go's json.Marshal of a map, as Dagu: sorted keys, compact, `<>&` escaped
        env["DAGU_PARAMS_JSON"] = encode_gojq(named, indent=None)
        if spec.secrets:
            self._add_secrets(spec.secrets, dag_vars, env)
        self.params_resolved = named
        self.base_env = env
        self.dag_vars = dag_vars

    def _settle_workdir(self, variables: Mapping[str, str]) -> None:
        """Expand a `workingDir` that names variables with the ones known so far."""
        wd = self._dag.spec.working_dir
        if wd and "$" in wd:
            self.workdir = dag_workdir(
                self._dag, self._settings, variables=variables, environ=self._environ
            )

    def _read_dotenv(
        self, dotenv: Sequence[str] | None, dag_vars: Mapping[str, str]
    ) -> dict[str, str]:
        """The values of the dotenv files (`.env` by default), later files winning; a file
        that is missing is passed over, one that does not parse too, recorded in
        `dotenv_errors`."""
        found: dict[str, str] = {}
        for name in [".env"] if dotenv is None else list(dotenv):
            scope = {**dag_vars, **found}  # a file's name may use an earlier file's values
            path = Path(os.path.expanduser(ex.expand(name, scope, fallback=self._environ)))
            if not path.is_absolute():
                path = self.workdir / path
            try:
                text = path.read_text(encoding="utf-8")
            except OSError:
                continue
            from model.dotenv import parse_env_file  # only when a dotenv file exists

            try:
                values = parse_env_file(text)
            except ValueError as exc:
                self.dotenv_errors.append((str(path), str(exc)))
                continue
            found.update(values)
        return found

    def _add_secrets(
        self, secrets: Sequence[Mapping[str, Any]], dag_vars: dict[str, str], env: dict[str, str]
    ) -> None:
        """Resolve the DAG's `secrets:` into the variables and the steps' environment, and
        build their masker. Raises SecretError (the run then fails before any step)."""
        from controller.secrets import dag_secret_masker

        values = resolve_secrets(
            secrets, variables={**self._environ, **dag_vars}, workdir=self.workdir
        )
        dag_vars.update(values)
        env.update(values)
        self.secret_values = values
        self.secret_masker = dag_secret_masker(values.values())

    def inherit_secrets(self, values: Sequence[str]) -> None:
        """Mask a parent run's secret values too (they reach a sub-DAG through its params)."""
        from controller.secrets import dag_secret_masker

        self.inherited_secrets = tuple(v for v in values if v)
        if self.inherited_secrets:
            own = self.secret_values.values()
            self.secret_masker = dag_secret_masker([*own, *self.inherited_secrets])

    def secrets_to_hand_on(self) -> list[str]:
        """The secret values a sub-DAG run must mask: this run's and those it inherited."""
        return sorted({*self.secret_values.values(), *self.inherited_secrets} - {""})

    def expand_text(self, text: str) -> str:
        """`${VAR}` expansion with the run's variables (DAG env, dotenv, params, outputs)."""
        outputs = {k: v for k, v in self.outputs.items() if k not in self.params_resolved}
        return ex.expand(text, {**self.dag_vars, **outputs}, fallback=self._environ)

    def expand_path(self, text: str, node: Node) -> str:
        """A path of a step's spec, `${VAR}` expanded in the node's scope."""
        return ex.expand(text, self.scope(node), fallback=self._environ)

    def redirect_path(self, target: str, node: Node) -> Path:
        """A step's `stdout:`/`stderr:` file: relative to the DAG's working directory, not
        the step's."""
        path = Path(self.expand_path(target, node))
        return path if path.is_absolute() else self.workdir / path

    def node_env(self, node: Node, *, dag_name: str, run_id: str, log_file: str) -> dict[str, str]:
        """The environment of a starting step: the base env, the outputs so far, the step's
        `env:` (expanded in order), Dagu's `DAG_*` variables and the node's extras."""
        env = dict(self.base_env)
        outputs = self.outputs_for(node)
        env.update(outputs)
        specials = {
            "DAG_NAME": dag_name,
            "DAG_RUN_ID": run_id,
            "DAG_RUN_LOG_FILE": log_file,
            "DAG_RUN_STEP_NAME": node.name,
            "DAG_RUN_STEP_STDOUT_FILE": node.stdout_path,
            "DAG_RUN_STEP_STDERR_FILE": node.stderr_path,
            **node.env_extra,
        }
        # Dagu evaluates every entry against the same scope, which has the DAG_* variables: an
        # entry does not see an earlier entry of the same step, and an unknown reference is
        # dropped (step_env_order, special_env_consistency).
        scope = {**self.dag_vars, **outputs, **specials}
        for key, value in node.step.env:
            v = ex.expand(
                value, scope, step_refs=self.step_refs, fallback=self._environ, keep_unknown=False
            )
            env[key] = ex.eval_backticks(v, env=env, cwd=str(self.workdir))
        env.update(specials)
        return env

    def outputs_for(self, node: Node) -> dict[str, str]:
        """The outputs a node sees: a step its ancestors' (`visible_outputs`); a handler,
        which has no `depends`, every output of the run. An output named as a param is
        hidden: in Dagu the param wins (an output does beat a DAG env variable)."""
        seen = (
            self.outputs
            if node.kind != "step"
            else visible_outputs(node.name, self._depends, self.published)
        )
        return {k: v for k, v in seen.items() if k not in self.params_resolved}

    def scope(self, node: Node) -> dict[str, str]:
        """The expansion scope of a step: the run's variables and outputs, its own env."""
        scope = {**self.dag_vars, **self.outputs_for(node)}
        for key, _ in node.step.env:
            if key in node.env:
                scope[key] = node.env[key]
        return scope

    def shell_vars(self, step: Any) -> set[str]:
        """The variables a step's shell gets through its environment and its text leaves to
        it: the DAG env and dotenv, unless a param, an output or the step's env overrides them
        (`ex.expand` `shell_text`)."""
        overridden = {*self.params_resolved, *self.outputs, *(k for k, _ in step.env)}
        # a secret is left to the shell too, so its value never shows in a command line
        env_only = {k for k, _ in self._dag.spec.env} | set(self.dotenv_values)
        env_only |= set(self.secret_values)
        return env_only - overridden

    def step_cwd(self, node: Node) -> str:
        """The step's working directory (relative to the DAG's)."""
        wd = node.step.working_dir
        if not wd:
            return str(self.workdir)
        p = Path(self.expand_path(os.path.expanduser(wd), node))
        return str(p if p.is_absolute() else self.workdir / p)

    def policy_int(self, value: int | str) -> int:
        """A `retryPolicy.limit`/`intervalSec` given as text (`${VAR}`, backticks), evaluated
        as Dagu does when the step starts: against its own process environment, which holds
        the OS environment, the DAG env and dotenv, but not params, step env or outputs.
        Raises ValueError with Go's strconv.Atoi message when the text is not an integer."""
        if isinstance(value, int):
            return value
        text = ex.expand(value, self.policy_vars, keep_unknown=False)
        text = ex.eval_backticks(text, env=self.policy_vars, cwd=str(self.workdir))
        if not _GO_ATOI.fullmatch(text):
            raise ValueError(
                f'failed to convert "{text}" to int: strconv.Atoi: parsing "{text}": invalid syntax'
            )
        return int(text)

    def publish(self, node: Node) -> None:
        """Make an ended step's outputs and `${id.*}` references visible to the next ones."""
        # the init handler's output is not visible to the steps (Dagu, handlers_init)
        for k, v in node.outputs.items() if node.kind != "onInit" else ():
            self.outputs[k] = v
        if node.kind == "step" and node.outputs:
            self.published.setdefault(node.name, {}).update(node.outputs)
        if node.step.id:
            code = str(node.exit_code if node.exit_code is not None else "")
            self.step_refs[node.step.id] = {
                "stdout": node.stdout_path,
                "stderr": node.stderr_path,
                "exitCode": code,
                "exit_code": code,  # Dagu's alias
            }


def _depends_by_name(steps: Sequence[Any]) -> dict[str, list[str]]:
    """Each step's `depends` as step names (a dependency may be given by its step id)."""
    by_id = {s.id: s.name for s in steps if s.id}
    return {s.name: [by_id.get(d, d) for d in s.depends or ()] for s in steps}
