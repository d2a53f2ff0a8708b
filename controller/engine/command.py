"""A step's command lines: the shell (step, DAG or default), `${VAR}` expansion with Dagu's
rules for shell text, and the temporary file of a `script:` (or of a multi-line command that
opens with a shebang) with the interpreter that runs it.

Called by the runner (`controller.engine.runner._begin_execution`), once per execution.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from controller.engine import expand as ex


def step_shell(step: Any, dag_shell: Sequence[str], default_shell: str) -> list[str]:
    """The shell a step's commands run in (`["direct"]`: no shell)."""
    if step.shell:
        return list(step.shell)  # a step-level shell is taken as written (no -e)
    if dag_shell:
        # Dagu 1.30.2 still adds -e to a DAG-level shell (shell_options, observed)
        shell = list(dag_shell)
        if shell != ["direct"] and "-e" not in shell[1:]:
            shell.append("-e")
        return shell
    return [*shlex.split(default_shell), "-e"]


def shebang(text: str) -> list[str] | None:
    """The interpreter a script names on its `#!` first line, split on blanks (`#!env perl`
    gives `["env", "perl"]`, looked up on PATH as Dagu does); None without one. A CRLF line
    ending is a blank too."""
    if not text.startswith("#!"):
        return None
    return text[2:].split("\n", 1)[0].split() or None


def build_argvs(
    step: Any,
    *,
    shell: list[str],
    scope: Mapping[str, str],
    step_refs: Mapping[str, Mapping[str, str]],
    shell_vars: Collection[str],
    script_dir: Path,
) -> tuple[list[list[str]], str]:
    """The argv of each of the step's commands, in order, and the script file written for a
    `script:` ("" without one; the caller removes it when the execution ends).

    `shell_vars` are the variables the shell gets through its environment (DAG env and
    dotenv, unless a param, an output or the step's env overrides them): shell text leaves
    them to the shell (`ex.expand` `shell_text`). Raises ValueError on an unparsable command.
    """

    def ev(text: str) -> str:
        return ex.expand(text, scope, step_refs=step_refs, quote_json=True)

    def ev_shell(text: str) -> str:
        return ex.expand(
            text,
            scope,
            step_refs=step_refs,
            quote_json=True,
            shell_text=True,
            shell_vars=shell_vars,
        )

    direct = len(shell) == 1 and shell[0] == "direct"
    script, commands = step.script, step.command
    if script is None and len(commands) == 1 and "\n" in commands[0] and shebang(commands[0]):
        # Dagu runs a multi-line command that opens with a shebang as a script
        script, commands = commands[0], []
    if script is not None:
        # parsed first: a command that does not parse leaves no script file behind
        interpreter = shlex.split(ev(commands[0])) if commands else None
        if interpreter is None and not step.shell:
            # a step's own shell runs the file as it is (the shebang is a comment to it); a
            # DAG-level or default shell gives way to the shebang (Dagu 1.30.2, observed)
            interpreter = shebang(script)
        fd, path = tempfile.mkstemp(prefix="dagloop_script-", dir=str(script_dir))
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            # Dagu substitutes params, step env and outputs into the script text, even
            # inside single quotes (not next to one), a whole "${VAR}" JSON-quoted as in
            # commands; the rest is left to the interpreter.
            f.write(ev_shell(script))
        os.chmod(path, 0o700)
        if interpreter is not None:
            return [[*interpreter, path]], path
        if direct:
            return [[path]], path
        return [[*shell, path]], path
    out = []
    for cmd in commands:
        if direct:
            out.append(shlex.split(ev(cmd)))
        else:
            out.append([*shell, "-c", ev_shell(cmd)])
    return out, ""
