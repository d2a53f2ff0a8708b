"""Run ids: UUIDv7-shaped, so they sort by creation time like Dagu's.

`new_run_id(now)` is random (manual and enqueued runs); `scheduled_run_id(dag, at)` is a pure
function of the DAG name and the cron instant, so the reconciler can name a scheduled run without
randomness and two passes deciding the same tick produce the same id (the unique index on
(dag_name, scheduled_at) is what actually refuses the second launch).
Callers: the reconciler (`plan`), `dagloop enqueue`, the run commands (`start`, `retry`).
"""

from __future__ import annotations

import hashlib
import os


def _uuid7(ms: int, rand: bytes) -> str:
    """Lay out a UUIDv7: 48-bit ms timestamp, version 7, 74 bits of `rand`, RFC 4122 variant."""
    r = int.from_bytes(rand[:10], "big")
    rand_a = (r >> 62) & 0xFFF
    rand_b = r & ((1 << 62) - 1)
    value = ((ms & ((1 << 48) - 1)) << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    h = f"{value:032x}"  # formatted by hand: `uuid` is not worth its import on the start path
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_run_id(now: float) -> str:
    """A fresh time-ordered run id for a run created at `now` (UTC epoch seconds)."""
    return _uuid7(int(now * 1000), os.urandom(10))


def scheduled_run_id(dag_name: str, scheduled_at: float) -> str:
    """The run id of the scheduled run of `dag_name` at the cron instant `scheduled_at`."""
    digest = hashlib.sha256(f"{dag_name}\0{scheduled_at:.3f}".encode()).digest()
    return _uuid7(int(scheduled_at * 1000), digest)
