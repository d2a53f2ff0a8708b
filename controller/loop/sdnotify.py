"""systemd's notify protocol (sd_notify): READY, WATCHDOG, STOPPING and STATUS datagrams.

The unit runs dagloop with `Type=notify` and `WatchdogSec=`: systemd passes a unix datagram
socket in ``NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace) and the watchdog
period in ``WATCHDOG_USEC``. The loop sends ``READY=1`` when it runs, ``WATCHDOG=1`` after every
pass (so a hung or SIGSTOPped loop stops pinging and systemd restarts it) and ``STOPPING=1``
when it shuts down. Without ``NOTIFY_SOCKET`` every call is a no-op.

The variables are removed from ``os.environ`` on construction, so the runners and steps the
controller spawns never inherit them (only the main process may notify).
Called by `controller.loop.controller` only. Stdlib only: the protocol is one `sendto` per message.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

__all__ = ["Notifier"]

_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """Sends sd_notify messages to the socket systemd gave this process (if any)."""

    def __init__(self, environ: MutableMapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        for name in _VARIABLES:
            env.pop(name, None)
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_seconds: float | None = None
        if usec.isdigit() and int(usec) > 0 and watchdog_pid in ("", str(os.getpid())):
            self.watchdog_seconds = int(usec) / 1_000_000

    @property
    def enabled(self) -> bool:
        """Whether systemd listens (NOTIFY_SOCKET was set)."""
        return bool(self.address)

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; False if not enabled or not delivered."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto("\n".join(fields).encode(), self.address)
        except OSError:
            return False  # systemd gone or socket full: never fail the loop for it
        return True

    def ready(self, status: str = "") -> bool:
        """Startup finished."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        """The loop is alive (send at least every `watchdog_seconds` / 2)."""
        return self.watchdog_seconds is not None and self.notify("WATCHDOG=1")

    def stopping(self, status: str = "") -> bool:
        """Shutdown began."""
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """A free-form status line (`systemctl status`)."""
        return self.notify(f"STATUS={text}")
