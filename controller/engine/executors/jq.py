"""The `jq` step executor: a jq filter (`command`) applied to a JSON document (`script`).

Called by the runner (`EXECUTORS["jq"]`) for a step with `executor: jq` (or `type: jq`).
Behaviour observed on Dagu 1.30.2 (gojq inside Dagu):
- `script` is expanded like any step text (`${VAR}`, `$VAR`, outputs); the filter is used as
  written (a `${VAR}` in it is a filter syntax error there too);
- the script must be one JSON value, else the step fails; an empty filter prints nothing;
- a filter that does not parse fails the step; one that names an undefined function or
  variable (`toarray`, `$nope`, `keys_unsorted`) prints nothing and succeeds; a runtime error
  (`.a.b` on a string) is written to stderr and the step still succeeds;
- each result is printed as gojq prints JSON: keys sorted, 4-space indent, `<`, `>` and `&`
  escaped as `\\u003c`…, integral floats without a fraction (`1.0` → `1`), exponents as in
  `1e-7` / `1e+21`; with `config: {raw: true}` strings are printed as they are and other
  values compactly on one line (a top-level `null` as an empty line).

The filter is evaluated by the `jq` program (a subprocess, `jq -c`, `run_jq`), whose compact
results are re-encoded here in gojq's format; without a `jq` program the step fails saying so.
gojq decodes objects into Go maps, so it iterates and re-encodes them in key order (`.[]`,
`to_entries`, `tojson`): the document is handed to jq with its keys sorted.
`run_jq` is also how `${VAR.filter}` references are evaluated (`controller.engine.expand`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, BinaryIO

__all__ = ["JqMissingError", "JqRun", "encode_gojq", "run_jq", "run_jq_step"]

# gojq's builtins that jq 1.6 lacks (jq gained them in 1.7): `trim`, `ltrim`, `rtrim`, `abs`
# and `add(f)`. Defined before every filter; the filter's own definitions come after.
_GOJQ_PRELUDE = (
    'def _gojq_str(f; $name): if type == "string" then f '
    'else error("\\($name) cannot be applied to: \\(type)") end; '
    'def trim: _gojq_str(sub("^\\\\s+"; "") | sub("\\\\s+$"; ""); "trim"); '
    'def ltrim: _gojq_str(sub("^\\\\s+"; ""); "ltrim"); '
    'def rtrim: _gojq_str(sub("\\\\s+$"; ""); "rtrim"); '
    'def abs: if type == "number" then (if . < 0 then 0 - . else . end) '
    'else error("abs cannot be applied to: \\(type)") end; '
    "def add(f): reduce f as $x (null; . + $x); "
)
# gojq keeps no key order, so it has no `keys_unsorted`: a filter naming it does not compile.
_GOJQ_UNDEFINED = re.compile(r"\bkeys_unsorted\b")
# jq's exit statuses: 2 usage or input error, 3 the filter does not compile, 5 runtime error.
_JQ_COMPILE_ERROR = 3
_JQ_RUNTIME_ERROR = 5


class JqMissingError(ValueError):
    """No `jq` program on PATH: a filter cannot be evaluated (never silently skipped)."""


@dataclass(frozen=True)
class JqRun:
    """What one `jq` run gave: its results (decoded JSON), exit status and error text."""

    values: list[Any]
    returncode: int
    stderr: bytes

    @property
    def compiled(self) -> bool:
        """False when the filter did not compile (or jq refused its arguments)."""
        return self.returncode in (0, _JQ_RUNTIME_ERROR)

    @property
    def undefined(self) -> bool:
        """The filter parsed but names a function or variable that does not exist."""
        return self.returncode == _JQ_COMPILE_ERROR and b" is not defined" in self.stderr


def run_jq(
    query: str, document: Any, *, timeout_seconds: float | None, limit: int | None = None
) -> JqRun:
    """Apply the jq filter `query` to the decoded JSON `document` with the `jq` program.

    With `limit`, only the first `limit` results are produced (`limit(n; query)`), so a
    generator that never ends still gives its first result, as gojq's iterator does. Raises
    JqMissingError without a `jq` program and subprocess.TimeoutExpired past the timeout.
    """
    program = shutil.which("jq")
    if program is None:
        raise JqMissingError("the jq program is not on PATH")
    if (m := _GOJQ_UNDEFINED.search(query)) is not None:
        message = f"jq: error: {m.group(0)}/0 is not defined (gojq keeps no key order)\n"
        return JqRun(values=[], returncode=_JQ_COMPILE_ERROR, stderr=message.encode())
    # the newline ends a `# comment` the filter may end with (gojq reads them too)
    program_text = f"limit({limit}; {query}\n)" if limit is not None else f"{query}\n"
    proc = subprocess.run(
        [program, "-c", _GOJQ_PRELUDE + program_text],
        input=json.dumps(document, sort_keys=True).encode(),
        capture_output=True,
        timeout=timeout_seconds,
        check=False,
    )
    values = [
        json.loads(line) for line in proc.stdout.decode("utf-8", "replace").splitlines() if line
    ]
    return JqRun(values=values, returncode=proc.returncode, stderr=proc.stderr)


def run_jq_step(
    *,
    command: Sequence[str],
    script: str | None,
    config: Mapping[str, Any],
    expand: Callable[[str], str],
    stdout: BinaryIO,
    stderr: BinaryIO,
    timeout_seconds: float | None,
) -> int:
    """Run a `jq` step; returns its exit code (0 also after a jq runtime error, as Dagu)."""
    query = " ".join(command).strip()
    text = expand(script or "")
    try:
        document = json.loads(text)
    except ValueError as exc:
        stderr.write(f"invalid JSON input: {exc}\n".encode())
        return 1
    if not query:
        return 0
    try:
        result = run_jq(query, document, timeout_seconds=timeout_seconds)
    except JqMissingError:
        stderr.write(b"the jq executor needs the jq program on PATH\n")
        return 1
    except subprocess.TimeoutExpired:
        stderr.write(b"jq timed out\n")
        return 124
    raw = _truthy(config.get("raw"))
    for value in result.values:
        if raw and isinstance(value, str):
            out = value
        elif raw and value is None:
            out = ""  # gojq's raw mode prints a top-level null as an empty line
        else:
            out = encode_gojq(value, indent=None if raw else "    ")
        stdout.write(out.encode() + b"\n")
    if result.stderr:
        stderr.write(result.stderr)
    # Dagu fails the step on a filter that does not parse; one that parses but names an
    # undefined function or variable prints nothing and succeeds (1.30.2, jq_undefined_name)
    return 0 if result.compiled or result.undefined else 1


def _truthy(value: Any) -> bool:
    # Dagu decodes the config weakly typed: "true", 1 and true all mean true.
    if isinstance(value, str):
        return value.strip().lower() in ("1", "t", "true")
    return bool(value)


def encode_gojq(value: Any, *, indent: str | None = "    ", _level: int = 0) -> str:
    """`value` as gojq/Dagu print JSON: sorted keys, HTML-safe strings, Go number format."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return _go_string(value)
    if isinstance(value, list):
        items = [encode_gojq(v, indent=indent, _level=_level + 1) for v in value]
        return _container("[", "]", items, indent, _level)
    if isinstance(value, dict):
        sep = ": " if indent is not None else ":"
        items = [
            _go_string(str(k)) + sep + encode_gojq(value[k], indent=indent, _level=_level + 1)
            for k in sorted(value)
        ]
        return _container("{", "}", items, indent, _level)
    return _go_string(str(value))


def _container(open_: str, close: str, items: list[str], indent: str | None, level: int) -> str:
    if not items:
        return open_ + close
    if indent is None:
        return open_ + ",".join(items) + close
    inner = "\n" + indent * (level + 1)
    return open_ + inner + ("," + inner).join(items) + "\n" + indent * level + close


def _go_float(f: float) -> str:
    if f != f:
        return "null"
    if f in (float("inf"), float("-inf")):
        f = 1.7976931348623157e308 if f > 0 else -1.7976931348623157e308
    x = abs(f)
    if x != 0 and (x < 1e-6 or x >= 1e21):
        text = repr(f)  # shortest digits, exponent form in this range
        mantissa, _, exponent = text.partition("e")
        sign = exponent[0] if exponent[:1] in "+-" else "+"
        digits = exponent.lstrip("+-").lstrip("0") or "0"
        if sign == "+" and len(digits) < 2:
            digits = digits.rjust(2, "0")
        return f"{mantissa}e{sign}{digits}"
    return format(Decimal(repr(f)).normalize(), "f")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_HTML = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _go_string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch in _HTML:
            out.append(_HTML[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
