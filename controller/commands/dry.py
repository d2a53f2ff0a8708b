"""`dagloop dry NAME|FILE [-- params]`: what a run would do, without running anything.

Prints the steps in dependency order with their commands (params substituted; the values of
secret-named params shown as `*****`), the names (never the values) of the environment
variables they would get from the DAG, and the dependency edges. Backticks are not evaluated.
"""

from __future__ import annotations

import argparse
import json
import sys

from controller.commands.common import add_common, add_json, add_quiet, fail, settings_from
from controller.dagfile import find_dag_file
from controller.engine import launch


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of `dry`."""
    add_common(parser)
    add_quiet(parser)
    parser.add_argument("dag", help="DAG name or file")
    parser.add_argument("-p", "--params", action="append", default=[], help="params 'K=V a b'")
    add_json(parser, "the plan (name, params, env, steps)")
    parser.add_argument("extra", nargs="*", help="params after --")


def run(args: argparse.Namespace) -> int:
    """Print the plan; returns 0, or 1 when the DAG cannot be loaded."""
    from controller.engine.expand import expand
    from controller.engine.runparams import mask_params
    from model.config import ConfigError
    from model.loader import DagLoadError, parse_param_overrides, resolve_params

    try:
        settings = settings_from(args)
    except ConfigError as exc:
        return fail("dry", exc)
    try:
        path = find_dag_file(args.dag, settings.dags_dir)
        dag = launch.load(path, settings)
    except (DagLoadError, FileNotFoundError) as exc:
        print(f"dagloop dry: {exc}", file=sys.stderr)
        return 1
    params = resolve_params(dag.spec.params, parse_param_overrides([*args.params, *args.extra]))
    # Secret-named params are shown as `*****`, in the list and inside commands (issue 8 #28).
    shown = mask_params(params, tuple(settings.secret_patterns))
    values = dict(launch.params_to_pairs(shown))
    order = _topo(dag.spec.steps)
    env_names = [k for k, _ in dag.spec.env]
    plan = []
    for step in order:
        plan.append(
            {
                "name": step.name,
                "commands": [expand(c, values) for c in step.command],
                "script": step.script is not None,
                "call": step.call,
                "depends": list(step.depends or []),
                "env": [k for k, _ in step.env],
            }
        )
    if args.json:
        print(
            json.dumps(
                {
                    "name": dag.name,
                    "params": shown,
                    "env": env_names,
                    "steps": plan,
                }
            )
        )
        return 0
    print(f"DAG {dag.name} (dry run, nothing is executed)")
    if shown:
        print("params: " + " ".join(shown))
    if env_names:
        print("env: " + ", ".join(env_names))
    for i, s in enumerate(plan, 1):
        print(f"{i}. {s['name']}")
        for c in s["commands"]:
            print(f"     $ {c}")
        if s["script"]:
            print("     (script)")
        if s["call"]:
            print(f"     call {s['call']}")
        if s["env"]:
            print("     env: " + ", ".join(s["env"]))
    print("edges:")
    for s in plan:
        for d in s["depends"]:
            print(f"  {d} -> {s['name']}")
    return 0


def _topo(steps: list) -> list:  # type: ignore[type-arg]
    by = {s.name: s for s in steps}
    by.update({s.id: s for s in steps if s.id})
    done: list = []  # type: ignore[type-arg]
    seen: set[str] = set()

    def visit(s: object) -> None:
        name = s.name  # type: ignore[attr-defined]
        if name in seen:
            return
        seen.add(name)
        for d in s.depends or []:  # type: ignore[attr-defined]
            if d in by:
                visit(by[d])
        done.append(s)

    for s in steps:
        visit(s)
    return done
