"""Dagu 1.30.2's own OpenAPI document (`api/v2/api.yaml`), read out of the Dagu binary.

Dagu validates its requests against the document embedded by oapi-codegen: a `[]string` of
base64 chunks of the gzipped JSON. We read it from the binary instead of keeping a copy in this
repository because the document is Dagu's (GPL-3.0, as its `info.license` says) and the binary
holds exactly the 1.30.2 text, offline. How it is found: every string starting like a gzip
stream in base64 (`H4sI`) is a candidate first chunk; the slice's backing array holds a
(pointer, length) pair for it, followed by the pairs of the other chunks in order.

`restricted` keeps the GET operations of the paths both Dagu and we serve, which is the contract
the test suite holds us to, with the document's one erratum mended (`ERRATA`). Used by
`tests/api/test_schemathesis_dagu.py`.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import re
import struct
from functools import cache
from pathlib import Path
from typing import Any

_GZIP_BASE64 = re.compile(rb"H4sI[A-Za-z0-9+/=]{16}")
_BASE64 = re.compile(rb"[A-Za-z0-9+/=]+")


def _load_segments(image: bytes) -> list[tuple[int, int, int]]:
    """(file offset, virtual address, size) of the ELF64 binary's PT_LOAD segments."""
    (phoff,) = struct.unpack_from("<Q", image, 0x20)
    entry_size, count = struct.unpack_from("<HH", image, 0x36)
    segments = []
    for i in range(count):
        kind, _flags, offset, vaddr, _paddr, size = struct.unpack_from(
            "<IIQQQQ", image, phoff + i * entry_size
        )
        if kind == 1:
            segments.append((offset, vaddr, size))
    return segments


def _chunks_from(image: bytes, table: int, segments: list[tuple[int, int, int]]) -> list[bytes]:
    """The base64 strings named by consecutive (pointer, length) pairs at file offset `table`."""
    chunks = []
    while table + 16 <= len(image):
        pointer, length = struct.unpack_from("<QQ", image, table)
        offset = next((o + pointer - v for o, v, n in segments if v <= pointer < v + n), None)
        if offset is None or not 0 < length < 1 << 20:
            break
        text = image[offset : offset + length]
        if not _BASE64.fullmatch(text):
            break
        chunks.append(text)
        table += 16
    return chunks


@cache
def extract(binary: Path) -> dict[str, Any]:
    """The v2 API document embedded in the Dagu binary at `binary`; ValueError if none."""
    image = binary.read_bytes()
    segments = _load_segments(image)
    for match in _GZIP_BASE64.finditer(image):
        offset = match.start()
        vaddr = next((v + offset - o for o, v, n in segments if o <= offset < o + n), None)
        if vaddr is None:
            continue
        for table in (m.start() for m in re.finditer(re.escape(struct.pack("<Q", vaddr)), image)):
            chunks = _chunks_from(image, table, segments)
            try:
                document = json.loads(gzip.decompress(base64.b64decode(b"".join(chunks))))
            except (binascii.Error, OSError, EOFError, ValueError):
                continue
            if "/dag-runs" in document.get("paths", {}):
                return dict(document)
    raise ValueError(f"{binary}: no embedded /api/v2 OpenAPI document found")


# Where Dagu 1.30.2's server and its document disagree, and we answer as the server does.
# The latest run of a DAG that never ran is a DAGRunSummary with empty `dagRunId` and
# `rootDAGRunId` (observed on `dagu server`: `GET /dags`), which `DAGRunId`'s pattern refuses.
ERRATA: dict[str, dict[str, Any]] = {
    "DAGRunSummary": {
        "dagRunId": {"type": "string", "pattern": "^[a-zA-Z0-9_-]*$"},
        "rootDAGRunId": {"type": "string", "pattern": "^[a-zA-Z0-9_-]*$"},
    },
}


def restricted(document: dict[str, Any], served: set[str]) -> dict[str, Any]:
    """A copy of Dagu's `document` with only the GET operations of the `served` paths, and
    `ERRATA` applied."""
    out = json.loads(json.dumps(document))
    for schema, properties in ERRATA.items():
        out["components"]["schemas"][schema]["properties"].update(properties)
    out["paths"] = {
        path: {
            "get": item["get"],
            **({"parameters": item["parameters"]} if "parameters" in item else {}),
        }
        for path, item in document["paths"].items()
        if path in served and "get" in item
    }
    return out
