"""Reading run and step log files for the API: safe paths, and pages of lines without loading
big files whole.

`contained_path` accepts only a path recorded in the store that resolves (symlinks included)
inside one of the allowed roots; a path parameter never becomes a file name here.
`read_log` answers Dagu's `Log` shape `{content, lineCount, totalLines, hasMore, isEstimate}`
with `tail`, `head` or `offset` (1-based line) + `limit`, reading at most a bounded number of
bytes for the content. Called by `api.runs`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

DEFAULT_LIMIT = 1000  # lines returned when neither tail, head nor limit is given
MAX_LINES = 10000  # the largest tail/head/limit accepted
MAX_CONTENT_BYTES = 4 * 1024 * 1024  # content of one response, at most
MAX_LINE_BYTES = 64 * 1024  # longer lines are cut (the rest of the line is skipped)
EXACT_COUNT_BYTES = 32 * 1024 * 1024  # above this, totalLines is estimated from a sample
_CHUNK = 1024 * 1024


def contained_path(recorded: str, roots: Sequence[Path]) -> Path | None:
    """The real path of `recorded` if it is an existing regular file inside one of `roots`."""
    if not recorded or "\x00" in recorded or not os.path.isabs(recorded):
        return None
    real = os.path.realpath(recorded)
    for root in roots:
        real_root = os.path.realpath(root)
        try:
            inside = os.path.commonpath([real, real_root]) == real_root
        except ValueError:
            continue
        if inside and os.path.isfile(real):
            return Path(real)
    return None


def _count_lines(f: IO[bytes], size: int) -> tuple[int, bool]:
    """(number of lines, is it an estimate). A last line without a newline counts."""
    if size == 0:
        return 0, False
    if size > EXACT_COUNT_BYTES:
        f.seek(0)
        sample = f.read(_CHUNK)
        newlines = sample.count(b"\n")
        per_line = len(sample) / newlines if newlines else float(size)
        return max(1, round(size / per_line)), True
    f.seek(0)
    count = 0
    last = b""
    while chunk := f.read(_CHUNK):
        count += chunk.count(b"\n")
        last = chunk
    if not last.endswith(b"\n"):
        count += 1
    return count, False


def _decode(lines: list[bytes]) -> str:
    return "\n".join(line.rstrip(b"\r").decode("utf-8", "replace") for line in lines)


def _tail(f: IO[bytes], size: int, n: int) -> tuple[list[bytes], bool]:
    """The last `n` lines and whether anything comes before them."""
    if size == 0:
        return [], False
    end = size
    f.seek(max(0, size - 1))
    if size and f.read(1) == b"\n":
        end -= 1  # the final newline ends the last line; it does not start an empty one
    buf = b""
    pos = end
    while pos > 0 and buf.count(b"\n") < n and len(buf) < MAX_CONTENT_BYTES:
        step = min(_CHUNK, pos)
        pos -= step
        f.seek(pos)
        buf = f.read(step) + buf
    buf = buf[: end - pos]
    lines = buf.split(b"\n")
    more = pos > 0 or len(lines) > n
    lines = lines[-n:]
    if pos > 0 and len(buf) >= MAX_CONTENT_BYTES and buf.count(b"\n") < n:
        lines = lines[1:]  # the first piece is a partial line: drop it
    return [line[:MAX_LINE_BYTES] for line in lines], more


def _skip_lines(f: IO[bytes], count: int) -> bool:
    """Move past `count` lines; False if the file ends first."""
    f.seek(0)
    while count > 0:
        chunk = f.read(_CHUNK)
        if not chunk:
            return False
        found = chunk.count(b"\n")
        if found < count:
            count -= found
            continue
        index = -1
        for _ in range(count):
            index = chunk.index(b"\n", index + 1)
        f.seek(f.tell() - len(chunk) + index + 1)
        return True
    return True


def _forward(f: IO[bytes], start: int, n: int) -> tuple[list[bytes], bool]:
    """`n` lines from line `start` (1-based) and whether more follow."""
    if not _skip_lines(f, start - 1):
        return [], False
    lines: list[bytes] = []
    used = 0
    while len(lines) < n and used < MAX_CONTENT_BYTES:
        line = f.readline(MAX_LINE_BYTES)
        if not line:
            return lines, False
        if not line.endswith(b"\n"):
            # cut line: skip to the end of it
            rest = f.readline()
            while rest and not rest.endswith(b"\n"):
                rest = f.readline()
        lines.append(line.rstrip(b"\n"))
        used += len(line)
    more = bool(f.read(1))
    return lines, more


def read_log(
    path: Path | bytes,
    *,
    tail: int | None = None,
    head: int | None = None,
    offset: int | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Dagu's `Log` document of a page of `path` (a file, or the bytes of a log shipped into
    the database by the worker that wrote it). `tail` wins over `head`, which wins over
    `offset`/`limit`; with none of them, the first `DEFAULT_LIMIT` lines."""
    with path.open("rb") if isinstance(path, Path) else io.BytesIO(path) as f:
        size = f.seek(0, os.SEEK_END)
        total, estimate = _count_lines(f, size)
        if tail is not None:
            lines, more = _tail(f, size, tail)
        else:
            count = head if head is not None else (limit if limit is not None else DEFAULT_LIMIT)
            lines, more = _forward(f, offset or 1, count)
    return {
        "content": _decode(lines),
        "lineCount": len(lines),
        "totalLines": total,
        "hasMore": more,
        "isEstimate": estimate,
    }
