"""A command in a real pseudo-terminal, and the screen a person would see.

`PtyCommand` starts `python -m controller ARGS` as the session leader of a new pseudo-terminal
(so the terminal's Ctrl-C reaches it as SIGINT, as in a shell), with a window size, and reads
its output. `Screen` replays that output as a terminal does: it knows only the sequences the
live view may send (carriage return, newline, cursor up, erase down, colours, cursor hide and
show) and fails on any other, and it keeps every line that scrolled by, so a test can check
that nothing was left behind.
"""

from __future__ import annotations

import codecs
import fcntl
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time
from collections.abc import Callable, Mapping

_CSI = re.compile(r"\x1b\[([?0-9;]*)([A-Za-z])")


class Screen:
    """The lines a terminal of `width` columns shows, with its whole scrollback."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.lines: list[list[str]] = [[]]
        self.row = 0
        self.col = 0
        self.wraps = 0  # lines that reached the right edge and wrapped
        self._pending = ""

    def feed(self, data: str) -> None:
        """Interpret `data` (may end in the middle of an escape sequence)."""
        text = self._pending + data
        self._pending = ""
        i = 0
        while i < len(text):
            char = text[i]
            if char == "\x1b":
                match = _CSI.match(text, i)
                if match is None:
                    if len(text) - i < 8:  # the rest of the sequence comes with the next read
                        self._pending = text[i:]
                        return
                    raise AssertionError(f"unexpected escape sequence {text[i : i + 8]!r}")
                self._csi(match.group(1), match.group(2))
                i = match.end()
                continue
            if char == "\r":
                self.col = 0
            elif char == "\n":
                self._down()
            elif char == "\t":
                self.col = min((self.col // 8 + 1) * 8, self.width)
            elif char == "\x07":
                pass
            elif char < " ":
                raise AssertionError(f"unexpected control character {char!r}")
            else:
                self._put(char)
            i += 1

    def _csi(self, params: str, final: str) -> None:
        if final == "m" or (params == "?25" and final in ("h", "l")):
            return
        if final == "A":
            top = max(0, len(self.lines) - self.height)
            self.row = max(top, self.row - int(params or "1"))
        elif final == "J" and params in ("", "0"):
            del self.lines[self.row][self.col :]
            del self.lines[self.row + 1 :]
        else:
            raise AssertionError(f"unexpected escape sequence CSI {params!r} {final!r}")

    def _down(self) -> None:
        self.row += 1
        if self.row == len(self.lines):
            self.lines.append([])

    def _put(self, char: str) -> None:
        if self.col >= self.width:  # the terminal wraps before it writes past the edge
            self.wraps += 1
            self._down()
            self.col = 0
        line = self.lines[self.row]
        line.extend(" " * (self.col - len(line)))
        if self.col < len(line):
            line[self.col] = char
        else:
            line.append(char)
        self.col += 1

    def text(self) -> list[str]:
        """Every line, scrollback included, trailing blank lines dropped."""
        out = ["".join(line).rstrip() for line in self.lines]
        while out and not out[-1]:
            out.pop()
        return out

    def visible(self) -> list[str]:
        """The lines on the screen now (the last `height`)."""
        return self.text()[-self.height :]


class PtyCommand:
    """`python -m controller ARGS` in a new pseudo-terminal of `columns` x `rows`."""

    def __init__(
        self, args: list[str], env: Mapping[str, str], *, columns: int = 100, rows: int = 30
    ) -> None:
        self.raw = b""
        self.screen = Screen(columns, rows)
        self.code: int | None = None
        self.ended = False  # the terminal reported the end of the output
        # a read may end inside a character (`█` is three bytes): decode across reads
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once (nothing else may run after a fork)
            try:
                os.execve(sys.executable, [sys.executable, "-m", "controller", *args], env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def read_until(self, done: Callable[[Screen], object], timeout: float = 30.0) -> None:
        """Read output until `done(screen)` holds; AssertionError with the screen after
        `timeout` seconds or when the command ends first."""
        deadline = time.monotonic() + timeout
        while not done(self.screen):
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                shown = "\n".join(self.screen.text()[-40:])
                raise AssertionError(f"not seen within {timeout} s; the screen:\n{shown}")

    def _read(self, timeout: float) -> bool:
        """Read what is there within `timeout` seconds; False on a timeout or at the end."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: every holder of the terminal's other side has closed it
            data = b""
        if not data:
            self.ended = True
            return False
        self.raw += data
        self.screen.feed(self._decoder.decode(data))
        return True

    def type(self, keys: bytes) -> None:
        """Type `keys` on the terminal (b"\\x03" is Ctrl-C)."""
        os.write(self.fd, keys)

    def wait(self, timeout: float = 30.0) -> int:
        """Read until the command ends and return its exit code."""
        deadline = time.monotonic() + timeout
        while not self.ended:
            if not self._read(max(deadline - time.monotonic(), 0.0)) and not self.ended:
                shown = "\n".join(self.screen.text()[-40:])
                raise AssertionError(f"still running after {timeout} s; the screen:\n{shown}")
        if self.code is None:
            _, status = os.waitpid(self.pid, 0)
            self.code = os.waitstatus_to_exitcode(status)
        return self.code

    def close(self) -> None:
        """Stop the command if it still runs (SIGTERM: it stops its steps, as `dagloop stop`
        does; then SIGKILL), reap it and close the terminal."""
        if self.code is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.wait(timeout=20)
            except AssertionError:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
        os.close(self.fd)
