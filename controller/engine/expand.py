"""Variable expansion and step environment composition, as Dagu 1.30 does it (reference §8 #4, #5).

Owns: `${VAR}` / `$VAR` / `${VAR.json.path}` / `${id.stdout|stderr|exitCode}` references,
the shell parameter operators on them (`${VAR:offset:length}`, `${#VAR}`, `${VAR/a/b}`,
`${VAR:-word}`, `${VAR:+word}`, `${VAR#p}`, `${VAR%s}`, `${VAR^^}` ...),
backtick command substitution and the filtered OS environment (seed whitelist minus the
controller's own secrets).

Called by the runner (env, commands, conditions) and `dry` (no backticks).
Pure except `eval_backticks`, which runs commands, and `filtered_os_env`, which reads nothing
itself (the caller passes the environment in).
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
import subprocess
from collections.abc import Callable, Collection, Mapping

from controller.engine.executors.jq import JqMissingError, run_jq
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
# Shell parameter operators, which Dagu 1.30.2 evaluates with mvdan/sh outside command text:
# `${#X}`, `${X:offset}`, `${X:offset:length}` (an offset may be negative only after a space,
# as `${X:-w}` is the default-value operator), `${X:-w}` `${X-w}` `${X:+w}` `${X+w}`,
# `${X/p/r}` `${X//p/r}`, `${X#p}` `${X##p}` `${X%p}` `${X%%p}` and `${X^}` `${X^^}` `${X,}`
# `${X,,}`. The plain references follow: `${X}`/`${X.path}`, `$X`, `${1}`, `$1`; a plain
# `${NAME.path}` takes everything up to `}` as its path, as Dagu's reference regex does, and
# `json_path` then decides whether it resolves.
_OPS = (
    rf"\$\{{(?P<length_of>#)(?P<lname>{_NAME})(?P<lpath>{_PATH})\}}"
    rf"|\$\{{(?P<oname>{_NAME})(?P<opath>{_PATH})(?:"
    r":(?P<offset>\d+|\s+-\d+)(?::\s*(?P<count>-?\d+))?"
    r"|(?P<test>:?[-+])(?P<word>[^}]*)"
    r"|(?P<replace>//?)(?P<pattern>[^/}]*)(?:/(?P<replacement>[^}]*))?"
    r"|(?P<trim>##?|%%?)(?P<affix>[^}]*)"
    r"|(?P<case>\^\^?|,,?)"
    r")\}"
)
_REF = re.compile(
    rf"{_OPS}|\$\{{(?P<name>{_NAME})(?P<path>(?:\.[^}}]+)?)\}}|\$(?P<bare>{_NAME})"
    r"|\$\{(?P<pos>\d+)\}|\$(?P<bare_pos>\d+)"
)
_QUOTED_REF = re.compile(rf'"\$\{{({_NAME})((?:\.[^}}]+)?)\}}"')
_BACKTICK = re.compile(r"`([^`]*)`")
# A `${VAR.filter}` jq run taking longer than this fails the expansion (Dagu has no limit; a
# filter that never yields must not hang the step for ever).
_FILTER_TIMEOUT_SECONDS = 10.0
# The jq paths `json_path` evaluates itself: `.key`, `[n]`/`.[n]` (n may be negative), `["key"]`,
# `.["key"]` and `."key"`.
_PATH_STEP = re.compile(
    r'\.([A-Za-z_][A-Za-z0-9_]*)|\.?\[\s*(-?\d+)\s*\]|\.?\[\s*("(?:[^"\\]|\\.)*")\s*\]'
    r'|\.("(?:[^"\\]|\\.)*")'
)


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
    """The jq filter `path` (`.a.b[0]`, `.list | length`) applied to the JSON text `value`, its
    first result formatted as Dagu (Go `%v`) does; Dagu evaluates it with gojq.

    Plain paths (`_PATH_STEP`) are evaluated here; anything else runs through the `jq` program
    (`.a // "d"`, `.items[] | .name`: the first result, as Dagu takes). None (Dagu then leaves
    the reference as written) when `value` is not JSON, when the filter does not compile (`.a-b`
    is `.a - b`), fails before its first result (a key into a string, an index into an object)
    or yields nothing. A missing key, an index out of range or anything under null is null,
    printed ``<nil>``. Raises ValueError when the filter cannot be evaluated at all (no `jq`
    program, or no result within `_FILTER_TIMEOUT_SECONDS`).
    """
    try:
        data: object = json.loads(value, parse_constant=_not_json)
    except ValueError:
        return None
    steps: list[str | int] = []
    pos = 0
    while pos < len(path):
        m = _PATH_STEP.match(path, pos)
        if m is None:
            return _filter_first(value, path)
        ident, index, bracketed, dotted = m.groups()
        if index is not None:
            steps.append(int(index))
        else:
            steps.append(ident if ident is not None else json.loads(bracketed or dotted))
        pos = m.end()
    for step in steps:
        if data is None:
            continue  # jq: null indexed by anything is null
        if isinstance(step, str):
            if not isinstance(data, dict):
                return None
            data = data.get(step)
        else:
            if not isinstance(data, list):
                return None
            i = step + len(data) if step < 0 else step
            data = data[i] if 0 <= i < len(data) else None
    return go_format(data)


def _not_json(constant: str) -> object:
    # Python reads NaN and Infinity; Go's encoding/json (Dagu) refuses them
    raise ValueError(f"{constant} is not JSON")


@functools.lru_cache(maxsize=256)
def _filter_first(value: str, query: str) -> str | None:
    """The first result of the jq filter `query` on the JSON text `value`, Go-formatted; None
    when it does not compile, fails first or yields nothing. Cached: the same reference is
    expanded for the command, the log and every retry of a step."""
    try:
        run = run_jq(query, json.loads(value), timeout_seconds=_FILTER_TIMEOUT_SECONDS, limit=1)
    except JqMissingError as exc:
        raise ValueError(f"cannot evaluate ${{VAR{query}}}: {exc}") from None
    except subprocess.TimeoutExpired:
        raise ValueError(
            f"cannot evaluate ${{VAR{query}}}: no result within {_FILTER_TIMEOUT_SECONDS:g} s"
        ) from None
    if not run.values:
        return None
    return go_format(run.values[0])


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

    def is_step_field(name: str, path: str) -> bool:
        return step_refs is not None and name in step_refs and path[1:] in step_refs[name]

    def lookup(name: str, path: str) -> str | None:
        if path and step_refs is not None and is_step_field(name, path):
            return step_refs[name][path[1:]]
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

    def next_to_quote(m: re.Match[str]) -> bool:
        return "'" in (m.string[m.start() - 1 : m.start()], m.string[m.end() : m.end() + 1])

    def sub(m: re.Match[str]) -> str:
        if m.group("oname") is not None or m.group("length_of") is not None:
            return operator(m)
        name, path = m.group("name") or m.group("bare"), m.group("path") or ""
        if shell_text and not path and next_to_quote(m):
            return m.group(0)
        if shell_vars and not path and name in shell_vars:
            return m.group(0)
        positional = m.group("pos") or m.group("bare_pos")
        if positional is not None:
            # Positional params are named "1", "2", … by the loader; Dagu substitutes them into
            # the text (the shell gets no arguments). `$10` is param 10, never `$1` + "0".
            found = variables.get(positional)
            return m.group(0) if found is None else found
        value = lookup(name, path)
        if value is None:
            return m.group(0) if keep_unknown else ""
        return value

    def operator(m: re.Match[str]) -> str:
        name = m.group("oname") or m.group("lname")
        path = m.group("opath") or m.group("lpath") or ""
        if m.group("oname") is not None and path and not is_step_field(name, path):
            # `${J.a // "d"}`, `${J.n-1}`, `${J.s:1:2}`: on a JSON value Dagu hands everything
            # after the name to gojq (no shell operator), like any `${J.filter}`
            found = lookup(name, m.group(0)[2 + len(name) : -1])
            if found is None:
                return m.group(0) if keep_unknown else ""
            return found
        # Dagu leaves an operator on a plain variable in command text to the step's shell
        # (observed: `${W:2:3}` under `shell: sh` is dash's "Bad substitution"); on a step
        # reference or a JSON path it evaluates substrings and defaults itself.
        evaluated_here = m.group("offset") is not None or m.group("test") == ":-"
        # (`${J.a-b}` and `${J.Content-Type}` stay as written in Dagu: json_path_forms)
        if shell_text and (not path or not evaluated_here):
            return m.group(0)
        if path and not evaluated_here:
            return m.group(0)  # mvdan/sh has no such operator on a dotted name
        value = lookup(name, path)
        if value is None and keep_unknown:
            return m.group(0)  # perhaps the shell's own variable: its shell evaluates it
        return apply_operator(m, value)

    return _REF.sub(sub, text)


def apply_operator(m: re.Match[str], value: str | None) -> str:
    """The result of the operator matched by `_REF` on `value` (None: unset), as mvdan/sh
    gives it in Dagu 1.30.2. An empty value counts as unset for `-` and `+` (observed:
    `${EMPTY+f}` is empty)."""
    text = value or ""
    if m.group("length_of") is not None:
        return str(len(text))
    if m.group("offset") is not None:
        count = None if m.group("count") is None else int(m.group("count"))
        return substring(text, int(m.group("offset")), count)
    test = m.group("test")
    if test is not None:
        if test.endswith("-"):
            return text or m.group("word")
        return m.group("word") if text else ""
    if m.group("replace") is not None:
        return _replace(text, m.group("pattern"), m.group("replacement") or "", m.group("replace"))
    if m.group("trim") is not None:
        return _trim(text, m.group("affix"), m.group("trim"))
    case = m.group("case")
    if case == "^^":
        return text.upper()
    if case == ",,":
        return text.lower()
    first = text[:1].upper() if case == "^" else text[:1].lower()
    return first + text[1:]


def _glob(pattern: str) -> str:
    """A shell pattern (`*`, `?`, `[a-c]`, `[!a]`) as a regular expression."""
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        close = pattern.find("]", i + 2) if char == "[" else -1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif close != -1:
            body = pattern[i + 1 : close]
            negate = body[:1] in ("!", "^")
            body = re.escape(body[1:] if negate else body).replace("\\-", "-")
            out.append(f"[{'^' if negate else ''}{body}]")
            i = close
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _replace(text: str, pattern: str, replacement: str, kind: str) -> str:
    """`${X/p/r}` (first, longest match) and `${X//p/r}` (every match); r is literal.
    A pattern starting with `#` or `%` is literal text: mvdan/sh in Dagu 1.30.2 does not anchor
    it (observed: `${W/#abc/X}` leaves W unchanged)."""
    if not pattern:
        return text
    regex = re.compile(_glob(pattern), re.DOTALL)
    return regex.sub(lambda _m: replacement, text, count=0 if kind == "//" else 1)


def _trim(text: str, pattern: str, kind: str) -> str:
    """`${X#p}` `${X##p}` (shortest, longest prefix) and `${X%p}` `${X%%p}` (suffix)."""
    regex = re.compile(_glob(pattern), re.DOTALL)
    if kind.startswith("#"):
        ends = range(len(text), -1, -1) if kind == "##" else range(len(text) + 1)
        for end in ends:
            if regex.fullmatch(text, 0, end):
                return text[end:]
        return text
    starts = range(len(text) + 1) if kind == "%%" else range(len(text), -1, -1)
    for start in starts:
        if regex.fullmatch(text, start):
            return text[:start]
    return text


def substring(value: str, offset: int, length: int | None = None) -> str:
    """`${X:offset:length}` as mvdan/sh evaluates it in Dagu 1.30.2: a negative offset counts
    from the end; a negative length is an end counted from the end, and an end before the
    offset leaves the rest (`${W:5:-6}` of abcdefghij is fghij; bash would refuse it)."""
    size = len(value)
    if offset < 0:
        offset += size
    if offset < 0 or offset > size:
        return ""
    rest = value[offset:]
    if length is None:
        return rest
    if length >= 0:
        return rest[:length]
    end = len(rest) + length
    return rest if end < 0 else rest[:end]


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
