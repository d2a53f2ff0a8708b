"""On-disk cache of loaded DAGs, so a run starts without importing pydantic.

Building the pydantic validation schemas of `model.spec` and even importing pydantic cost more
than the whole 150 ms budget of `dagloop start` for a one-step DAG. A DAG loaded once is pickled
under `<data_dir>/cache/spec/<key>.pickle`, where the key is the sha256 of the DAG file's bytes
(or the stored snapshot text), base.yaml's bytes, the file's path, the dagloop version and the
stamps of the loader's own source files — so an edit of any of them is a miss, never a stale hit.

A hit is read back with a restricted unpickler that maps the spec models to the small
attribute classes below (`LightDag`, `LightSpec` and the few subclasses with methods): the
values are the ones the validating loader produced, the classes need neither pydantic nor
yaml. The methods the run engine calls (`executor_type`,
`HandlerOnSpec.items`, `Dag.queue`...) come from the same mixins as the pydantic models'
(`model.specbase`); `model_copy` is the light one below. A corrupt or foreign cache file is ignored
and rewritten. Caching is best effort: a cache directory that cannot be written only costs time.

Called by `controller.engine.launch.load` (the run commands, and through them every runner the
controller launches). The long-running processes (controller, API) keep using the loader.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model import __version__
from model.specbase import DagBehaviour, HandlerOnBehaviour, StepBehaviour

CACHE_SUBDIR = "cache/spec"


_SOURCES = ("spec.py", "specbase.py", "loader.py", "speccache.py")


@functools.lru_cache(maxsize=1)
def _code_stamp() -> bytes:
    """Stamps of the loader's source files: an edited loader invalidates every entry.

    Read once per process: a long-running process (controller, API) keeps running the loader
    it imported, so the stamps of that code are the right ones for every key it computes."""
    here = Path(__file__).parent
    parts = []
    for name in _SOURCES:
        try:
            st = (here / name).stat()
            parts.append(f"{name}:{st.st_mtime_ns}:{st.st_size}")
        except OSError:
            parts.append(f"{name}:-")
    return ";".join(parts).encode()


def cache_key(*, source: bytes, base: bytes | None, location: Path, extra: str = "") -> str:
    """The cache key of a DAG: sha256 over everything the loaded value depends on."""
    h = hashlib.sha256()
    for part in (
        f"dagloop {__version__}".encode(),
        _code_stamp(),
        str(location).encode(),
        extra.encode(),
        b"-" if base is None else b"+" + base,
        source,
    ):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def load(
    path: Path,
    *,
    base_config: Path | None,
    cache_dir: Path,
    loader: Callable[[], Any],
    text: str | None = None,
    max_bytes: int | None = None,
) -> Any:
    """The DAG of `path` (or of the snapshot `text`), from the cache or from `loader()`.

    `loader` is called on a miss (it raises the usual `DagLoadError`); its result is stored.
    A file larger than `max_bytes` always goes to the loader, which reports it.
    """
    try:
        source = text.encode() if text is not None else path.read_bytes()
    except OSError:
        return loader()
    if max_bytes is not None and text is None and len(source) > max_bytes:
        return loader()
    base: bytes | None = None
    if base_config is not None:
        try:
            base = base_config.read_bytes()
        except FileNotFoundError:
            base = None
        except OSError:
            return loader()
    key = cache_key(
        source=source, base=base, location=path, extra="text" if text is not None else "file"
    )
    entry = cache_dir / CACHE_SUBDIR / f"{key}.pickle"
    hit = read_entry(entry)
    if hit is not None:
        return hit
    dag = loader()
    write_entry(entry, dag)
    return dag


def read_entry(entry: Path) -> Any | None:
    """The cached DAG in `entry` as light objects, or None when absent or unreadable."""
    try:
        data = entry.read_bytes()
    except OSError:
        return None
    try:
        value = _LightUnpickler(io.BytesIO(data)).load()
    except Exception:  # corrupt, truncated or written by another layout: a miss
        return None
    return value if isinstance(value, LightDag) else None


def write_entry(entry: Path, dag: Any) -> None:
    """Store `dag` under `entry` atomically; failures are ignored (the cache is optional)."""
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    try:
        data = pickle.dumps(dag, protocol=pickle.HIGHEST_PROTOCOL)
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, entry)
    except Exception:  # unpicklable value, read-only or full disk: run without the cache
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


# --------------------------------------------------------------------------- light classes


class LightSpec:
    """A spec model read back from the cache: the validated field values as attributes."""

    def __setstate__(self, state: Any) -> None:
        # pydantic's pickled state: {'__dict__': fields, '__pydantic_fields_set__': ..., ...}
        fields = state["__dict__"] if isinstance(state, dict) and "__dict__" in state else state
        self.__dict__.update(fields)

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Any:
        """A copy with `update` applied, as pydantic's `model_copy` (no validation)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        if update:
            new.__dict__.update(update)
        return new

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    __hash__ = None  # type: ignore[assignment]


class StepSpec(StepBehaviour, LightSpec):
    """Light `model.spec.StepSpec`."""


class HandlerOnSpec(HandlerOnBehaviour, LightSpec):
    """Light `model.spec.HandlerOnSpec`."""


class DagSpec(LightSpec):
    """Light `model.spec.DagSpec`."""


class LightDag(DagBehaviour):
    """Light `model.loader.Dag`: the spec plus where it came from."""

    spec: Any
    name: str
    location: Path | None
    source: str
    local_dags: dict[str, LightDag]


_WITH_METHODS: dict[str, type[LightSpec]] = {
    "StepSpec": StepSpec,
    "HandlerOnSpec": HandlerOnSpec,
    "DagSpec": DagSpec,
}
_PLAIN: dict[str, type[LightSpec]] = {}

# Everything else a cached DAG may reference; anything outside this list is a miss.
_ALLOWED = {
    ("pathlib", "PosixPath"),
    ("pathlib", "PurePosixPath"),
    ("copyreg", "__newobj__"),
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("datetime", "date"),
    ("datetime", "datetime"),
    ("datetime", "timedelta"),
}


def light_class(name: str) -> type[LightSpec]:
    """The light class standing in for `model.spec.<name>`."""
    if name in _WITH_METHODS:
        return _WITH_METHODS[name]
    cls = _PLAIN.get(name)
    if cls is None:
        cls = type(name, (LightSpec,), {"__doc__": f"Light `model.spec.{name}`."})
        _PLAIN[name] = cls
    return cls


class _LightUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "model.spec" and name.endswith("Spec") and name.isidentifier():
            return light_class(name)
        if module == "model.loader" and name == "Dag":
            return LightDag
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"not allowed in the spec cache: {module}.{name}")
