"""Variable expansion and step environment composition, as Dagu 1.30 does it (reference §8 #4, #5).

Owns: `${VAR}` / `$VAR` / `${VAR.json.path}` / `${id.stdout|stderr|exitCode}` references,
the bash operators `${VAR:offset:length}` and `${VAR:-word}` on them,
backtick command substitution and the filtered OS environment (seed whitelist minus the
controller's own secrets).

Called by the runner (env, commands, conditions) and `dry` (no backticks).
Pure except `eval_backticks`, which runs commands, and `filtered_os_env`, which reads nothing
itself (the caller passes the environment in).
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from collections.abc import Callable, Collection, Mapping

from model.params import PARAM_NAME

__all__ = [
    "ENV_PREFIXES",
    "ENV_WHITELIST",
    "eval_backticks",
    "expand",
    "filtered_os_env",
    "json_path",
    "substring",
]

ENV_WHITELIST = ("PATH", "HOME", "LANG", "TZ", "SHELL")
ENV_PREFIXES = ("DAGU_", "LC_", "DAG_")
# Controller credentials that match DAGU_ but must never reach a step (Dagu leaks them).
_ALWAYS_SECRET = (
    "DAGU_AUTH_*",
    "DAGU_BASICAUTH_*",
    "DAGU_AUTHTOKEN",
    "DAGU_DATABASE_URL",
    "DAGU_GITSYNC_AUTH_*",
)

# ${NAME}, ${NAME.path.to[0]}, ${id.stdout}, $NAME, and positional params $1 / ${1}; a NAME is
# what a param or env name may be (`model.params.PARAM_NAME`)
_NAME = PARAM_NAME.pattern
_PATH = r"((?:\.[A-Za-z0-9_\-]+|\[\d+\])*)"
# Bash operators Dagu evaluates itself: `${X:offset}`, `${X:offset:length}` (an offset may be
# negative only after a space, as `${X:-w}` is the default-value operator) and `${X:-word}`.
# Groups: 1 name, 2 path, 3 offset, 4 length, 5 default word; the plain forms follow (6-10).
_OPS = rf"\$\{{({_NAME}){_PATH}:(?:(\d+|\s+-\d+)(?::\s*(-?\d+))?|-([^}}]*))\}}"
_REF = re.compile(rf"{_OPS}|\$\{{({_NAME}){_PATH}\}}|\$({_NAME})|\$\{{(\d+)\}}|\$(\d+)")
_QUOTED_REF = re.compile(rf'"\$\{{({_NAME}){_PATH}\}}"')
_BACKTICK = re.compile(r"`([^`]*)`")
_PATH_PART = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]")


def filtered_os_env(
    environ: Mapping[str, str], *, secret_patterns: tuple[str, ...] = ()
) -> dict[str, str]:
    """The OS variables a step may see: the seed's whitelist and prefixes, minus secrets.

    Among `DAGU_*` variables, the controller's credentials (`DAGU_AUTH_*`, `DAGU_DATABASE_URL`)
    and anything matching one of `secret_patterns` (fnmatch, e.g. ``*PASSWORD*``) are dropped.
    """
    out: dict[str, str] = {}
    for key, value in environ.items():
        if key in ENV_WHITELIST:
            out[key] = value
        elif key.startswith(ENV_PREFIXES):
            if key.startswith("DAGU_") and _is_secret(key, secret_patterns):
                continue
            out[key] = value
    return out


def _is_secret(key: str, patterns: tuple[str, ...]) -> bool:
    upper = key.upper()
    return any(fnmatch.fnmatchcase(upper, p.upper()) for p in (*_ALWAYS_SECRET, *patterns))


def json_path(value: str, path: str) -> str | None:
    """`.a.b[0]` applied to the JSON object text `value`, formatted as Dagu (Go `%v`) does.

    None when `value` is not a JSON object (Dagu then leaves the reference as written);
    ``<nil>`` when the object does not have the path, as Dagu substitutes.
    """
    try:
        data: object = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    for m in _PATH_PART.finditer(path):
        key, index = m.group(1), m.group(2)
        if key is not None and isinstance(data, dict) and key in data:
            data = data[key]
        elif index is not None and isinstance(data, list) and int(index) < len(data):
            data = data[int(index)]
        elif key is not None and key.isdigit() and isinstance(data, list) and int(key) < len(data):
            data = data[int(key)]
        else:
            return "<nil>"
    return go_format(data)


def go_format(value: object) -> str:
    """A decoded JSON value as Go's `fmt.Sprint` prints it (how Dagu renders `${V.path}`).

    Numbers are float64 in Go (`1e+06`), lists `[a b]`, objects `map[k:v]` with sorted keys,
    null `<nil>`.
    """
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _go_float(float(value))
    if isinstance(value, list):
        return "[" + " ".join(go_format(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items())
        return "map[" + " ".join(f"{k}:{go_format(v)}" for k, v in items) + "]"
    return str(value)


def _go_float(f: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64): shortest digits, exponent form when exp < -4 or >= 6."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if str(f).startswith("-") else "0"
    sign = "-" if f < 0 else ""
    # shortest round-trip digits come from repr; recompute the decimal exponent from them
    digits_repr = repr(abs(f))
    if "e" in digits_repr:
        m, _, e = digits_repr.partition("e")
        digits = m.replace(".", "").lstrip("0")
        exp = int(e) + (len(m.split(".")[0].lstrip("0")) - 1 if "." in m else len(m) - 1)
    else:
        whole, _, frac = digits_repr.partition(".")
        frac = frac.rstrip("0")
        if whole.strip("0"):
            exp = len(whole.lstrip("0")) - 1
            digits = (whole.lstrip("0") + frac).rstrip("0")
        else:
            stripped = frac.lstrip("0")
            exp = -(len(frac) - len(stripped)) - 1
            digits = stripped.rstrip("0")
    digits = digits.rstrip("0") or "0"
    if exp < -4 or exp >= 6:
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{digits}"
    if len(digits) <= exp + 1:
        return f"{sign}{digits}{'0' * (exp + 1 - len(digits))}"
    return f"{sign}{digits[: exp + 1]}.{digits[exp + 1 :]}"


StepRefs = Mapping[str, Mapping[str, str]]


def expand(
    text: str,
    variables: Mapping[str, str],
    *,
    step_refs: StepRefs | None = None,
    fallback: Mapping[str, str] | None = None,
    keep_unknown: bool = True,
    quote_json: bool = False,
    shell_text: bool = False,
    shell_vars: Collection[str] = (),
) -> str:
    """Replace variable references in `text`.

    `variables` are looked up first, then `fallback` (e.g. the OS environment at load time).
    `step_refs` maps a step id to ``{"stdout": path, "stderr": path, "exitCode": "0"}``.
    Unknown references stay as written when `keep_unknown` (the shell expands them later),
    else become "". `quote_json` replaces a whole ``"${VAR}"`` with the JSON-quoted value, as
    Dagu's first expansion pass does. `shell_text` applies Dagu's rule for command and script
    text: a plain reference (`$X`, `${X}`, `$1`) right after or right before a single quote
    (`'$X`, `$X'`) is left to the shell; `${X.path}` and `${id.stdout}` are always replaced.
    Plain references to `shell_vars` (the DAG's env, which the shell has in its environment) are
    left to the shell too, so single quotes keep them literal as in Dagu. The bash operators
    `${X:offset:length}` and `${X:-word}` (on variables, step references and JSON paths) are
    evaluated here, shell variables included, as Dagu does.
    """
    if "$" not in text:
        return text

    def lookup(name: str, path: str) -> str | None:
        if path and step_refs is not None and name in step_refs:
            field = path[1:]
            if field in step_refs[name]:
                return step_refs[name][field]
        value = variables.get(name)
        if value is None and fallback is not None:
            value = fallback.get(name)
        if value is None:
            return None
        if path:
            return json_path(value, path)
        return value

    if quote_json and '"${' in text:

        def quoted(m: re.Match[str]) -> str:
            value = lookup(m.group(1), m.group(2) or "")
            return m.group(0) if value is None else json.dumps(value, ensure_ascii=False)

        text = _QUOTED_REF.sub(quoted, text)

    def sub(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return operator(m)
        if (
            shell_text
            and not m.group(7)
            and "'" in (m.string[m.start() - 1 : m.start()], m.string[m.end() : m.end() + 1])
        ):
            return m.group(0)
        if shell_vars and not m.group(7) and (m.group(6) or m.group(8)) in shell_vars:
            return m.group(0)
        positional = m.group(9) or m.group(10)
        if positional is not None:
            # Positional params are named "1", "2", … by the loader; Dagu substitutes them into
            # the text (the shell gets no arguments). `$10` is param 10, never `$1` + "0".
            found = variables.get(positional)
            return m.group(0) if found is None else found
        if m.group(8) is not None:
            value = lookup(m.group(8), "")
        else:
            value = lookup(m.group(6), m.group(7) or "")
        if value is None:
            return m.group(0) if keep_unknown else ""
        return value

    def operator(m: re.Match[str]) -> str:
        # Substituted even for a variable the shell has (`shell_vars`): `sh` may be dash,
        # which knows no substrings; next to a single quote it is still the shell's.
        if (
            shell_text
            and not m.group(2)
            and "'" in (m.string[m.start() - 1 : m.start()], m.string[m.end() : m.end() + 1])
        ):
            return m.group(0)
        value = lookup(m.group(1), m.group(2) or "")
        if value is None and keep_unknown:
            return m.group(0)  # perhaps the shell's own variable: its shell evaluates it
        if m.group(5) is not None:
            return value or m.group(5)
        if value is None:
            return ""
        length = None if m.group(4) is None else int(m.group(4))
        return substring(value, int(m.group(3)), length)

    return _REF.sub(sub, text)


def substring(value: str, offset: int, length: int | None = None) -> str:
    """Bash's `${X:offset:length}` as Dagu 1.30.2 evaluates it: a negative offset counts from
    the end, a negative length is an end counted from the end; out of range gives ""."""
    size = len(value)
    if offset < 0:
        offset += size
    if offset < 0 or offset > size:
        return ""
    if length is None:
        return value[offset:]
    end = offset + length if length >= 0 else size + length
    # bash refuses an end before the offset ("substring expression < 0"); nothing is printed
    return value[offset:end] if end >= offset else ""


def eval_backticks(
    text: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    runner: Callable[[str], str] | None = None,
    strict: bool = False,
) -> str:
    """Replace each `` `cmd` `` by the command's trimmed stdout (run with ``sh -c``).

    A failing command is replaced by its (possibly empty) output, as Dagu does not stop there
    in step text; with `strict` (DAG `env:` and `params:`, which Dagu refuses to start with)
    it raises ValueError naming the command and its exit status.
    """
    if "`" not in text:
        return text

    def run(cmd: str) -> str:
        if runner is not None:
            return runner(cmd)
        proc = subprocess.run(
            ["sh", "-c", cmd],
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            check=False,
            timeout=60,
        )
        if strict and proc.returncode != 0:
            raise ValueError(f"command substitution `{cmd}` failed: exit status {proc.returncode}")
        return proc.stdout.decode("utf-8", "replace").strip()

    return _BACKTICK.sub(lambda m: run(m.group(1)), text)
