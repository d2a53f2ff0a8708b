"""The one parser of env files: systemd `EnvironmentFile`s and DAG `dotenv` files.

Pure (text in, dict out, no variable expansion). Called by the runner for a DAG's `dotenv`
files (`controller.engine.runner`), and by the deployment checks that read the systemd unit's
environment file. Kept out of `model.config`, which is about the controller's settings.
"""

from __future__ import annotations

import re

__all__ = ["DotenvError", "parse_env_file"]


class DotenvError(ValueError):
    """Malformed env-file text; the message names the line."""


_ENV_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$", re.DOTALL)
_DQ_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$", "`": "`"}


def _parse_double_quoted(body: str, lineno: int) -> tuple[str, str]:
    """`body` starts after the opening quote; returns (value, rest after the closing quote)."""
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == "\n":  # line continuation inside quotes
                i += 2
                continue
            out.append(_DQ_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        if ch == '"':
            return "".join(out), body[i + 1 :]
        out.append(ch)
        i += 1
    raise DotenvError(f"line {lineno}: unterminated double quote")


def parse_env_file(text: str) -> dict[str, str]:
    """Parse systemd `EnvironmentFile` / dotenv text into a dict, in file order.

    Supports blank lines, `#`/`;` comment lines, an optional `export ` prefix, unquoted values
    (trimmed; ` #` starts a comment), single quotes (literal) and double quotes (with `\\n`, `\\t`,
    `\\"`, `\\\\`, `\\$` escapes; may span lines), and a trailing `\\` continuing an unquoted line.
    Variables are not expanded here. Raises `DotenvError` naming the line on malformed input.
    """
    result: dict[str, str] = {}
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        lineno = i + 1
        line = lines[i].strip()
        i += 1
        if not line or line.startswith(("#", ";")):
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            raise DotenvError(f"line {lineno}: expected NAME=VALUE, got {line!r}")
        name, raw = match.group(1), match.group(2)
        if raw.startswith('"'):
            body = raw[1:]
            while True:
                try:
                    value, rest = _parse_double_quoted(body, lineno)
                    break
                except DotenvError:
                    if i >= len(lines):
                        raise
                    body += "\n" + lines[i]
                    i += 1
        elif raw.startswith("'"):
            body = raw[1:]
            while "'" not in body:
                if i >= len(lines):
                    raise DotenvError(f"line {lineno}: unterminated single quote")
                body += "\n" + lines[i]
                i += 1
            value, rest = body.split("'", 1)
        else:
            while raw.endswith("\\") and i < len(lines):
                raw = raw[:-1] + lines[i].strip()
                i += 1
            value = re.split(r"\s+#", raw, maxsplit=1)[0].strip()
            rest = ""
        rest = rest.strip()
        if rest and not rest.startswith("#"):
            raise DotenvError(f"line {lineno}: unexpected text after the closing quote: {rest!r}")
        result[name] = value
    return result
