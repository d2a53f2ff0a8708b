"""Run endpoints: `/dag-runs`, `/dag-runs/{name}`, `/dag-runs/{name}/{dagRunId}` and its
`spec`, `log`, `steps/{stepName}/log`, `outputs` and `sub-dag-runs`. `latest` is accepted as
the run id everywhere. Run JSON comes from `controller.views.runs` (one builder for CLI and API).
Log files are opened only from paths recorded in the store, and only inside the log
directories (`api.logfile.contained_path`). Routed by `api.app.create_app`.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import falcon

from api import params
from api.errors import NotFoundError
from api.logfile import MAX_LINES, contained_path, read_log
from api.state import ApiContext
from controller.store.filters import RunFilter
from controller.store.records import RunRecord, StepRecord, step_from_values
from controller.views.runs import (
    details_document,
    outputs_document,
    presented,
    rfc3339,
    run_summary,
)
from model.status import RunStatus

DEFAULT_PER_PAGE = 100


def _run(ctx: ApiContext, name: str, dag_run_id: str) -> RunRecord:
    params.dag_name(name)
    params.run_id(dag_run_id)
    return ctx.stores.get().get_run(name, dag_run_id)


class RunList:
    """GET /api/v2/dag-runs and /api/v2/dag-runs/{name}: run summaries, newest first, a page
    at a time (Dagu answers up to 1,000 at once; at 100,000 runs that is ~100 ms of JSON)."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def _list(self, req: falcon.Request, resp: falcon.Response, dag_name: str | None) -> None:
        where = _run_filter(req, dag_name, now=self.ctx.clock())
        page, per_page = params.page_params(req, default_per_page=DEFAULT_PER_PAGE)
        store = self.ctx.stores.get()
        total = store.count_runs(where)
        offset = (page - 1) * per_page
        runs = store.list_runs(where, limit=per_page, offset=offset) if offset < total else []
        resp.media = {
            "dagRuns": [run_summary(r) for r in runs],
            "pagination": params.pagination(page, per_page, total),
        }

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Filters: `status` (code), `name` (substring), `fromDate`/`toDate` (unix seconds;
        default since today 00:00 UTC), `dagRunId`; pages: `page`, `perPage`."""
        self._list(req, resp, None)

    on_head = on_get

    def on_get_by_name(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        """The same, for the DAG named exactly `name` (any text: it is only compared)."""
        self._list(req, resp, name)

    on_head_by_name = on_get_by_name


def _run_filter(req: falcon.Request, dag_name: str | None, *, now: float) -> RunFilter:
    """The runs a listing asks for: `status`, `name` (not with a DAG in the path),
    `fromDate` (default: today 00:00 UTC at `now`), `toDate` and `dagRunId`."""
    status = params.int_param(req, "status", minimum=0, maximum=max(RunStatus))
    since = params.int_param(req, "fromDate", int64=True)
    until = params.int_param(req, "toDate", int64=True)
    if since is None:
        today = datetime.fromtimestamp(now, UTC)
        since = int(today.replace(hour=0, minute=0, second=0, microsecond=0).timestamp())
    return RunFilter(
        dag_name=dag_name,
        name_contains=params.str_param(req, "name") if dag_name is None else None,
        statuses=(RunStatus(status),) if status is not None else (),
        since=float(since),
        until=float(until) if until is not None else None,
        run_id=params.run_id_param(req, "dagRunId"),
    )


class DetailsCache:
    """The JSON of the run details answered last, each with what it was made of: the run's
    row, how it reads now (a running run whose runner is gone reads as failed) and its step
    rows. A run whose inputs are all equal is answered with the same bytes, without decoding
    and rendering its steps again — the dashboard's run page polls exactly this, and a
    100-step run costs ~4 ms to render."""

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, tuple[object, bytes]] = OrderedDict()

    def get(self, run: int, inputs: object) -> bytes | None:
        """The JSON made of `inputs` for row id `run`, or None."""
        with self._lock:
            entry = self._entries.get(run)
            if entry is None or entry[0] != inputs:
                return None
            self._entries.move_to_end(run)
            return entry[1]

    def put(self, run: int, inputs: object, body: bytes) -> None:
        """Keep `body` as the JSON made of `inputs`, dropping the least recently read run."""
        with self._lock:
            self._entries[run] = (inputs, body)
            self._entries.move_to_end(run)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


class RunDetails:
    """GET /api/v2/dag-runs/{name}/{dagRunId}: `{dagRunDetails}`."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.cache = DetailsCache()
        self._read = threading.local()  # per thread (= per connection): what it last read

    def _rows(self, name: str, run_id: str) -> tuple[RunRecord, list[tuple[Any, ...]]]:
        """The run and its step rows; read again only when the database changed since this
        thread's connection last read them (SQLite's data_version), which a poll of an
        unchanged run does not."""
        store = self.ctx.stores.get()
        version = store.change_counter()
        seen: dict[tuple[str, str], tuple[int | None, RunRecord, list[tuple[Any, ...]]]]
        seen = self._read.__dict__.setdefault("seen", {})
        hit = seen.get((name, run_id))
        if version is not None and hit is not None and hit[0] == version:
            return hit[1], hit[2]
        run = _run(self.ctx, name, run_id)
        rows = store.list_step_rows(run.id)
        if len(seen) >= 256:
            seen.clear()
        seen[(name, run_id)] = (version, run, rows)
        return run, rows

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str, dagRunId: str) -> None:
        """The run's summary, nodes, handler nodes and outputs."""
        run, rows = self._rows(name, dagRunId)
        shown = presented(run)
        inputs = (run, shown.status, shown.error, rows)
        body = self.cache.get(run.id, inputs)
        if body is None:
            steps = [step_from_values(r) for r in rows]
            document = {"dagRunDetails": details_document(run, steps)}
            body = json.dumps(document, ensure_ascii=False).encode()  # as falcon's media
            self.cache.put(run.id, inputs, body)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = body

    on_head = on_get

    def on_get_spec(
        self, req: falcon.Request, resp: falcon.Response, name: str, dagRunId: str
    ) -> None:
        """`{spec}`: the DAG file text the run was made from."""
        run = _run(self.ctx, name, dagRunId)
        resp.media = {"spec": run.spec_yaml}

    on_head_spec = on_get_spec

    def on_get_outputs(
        self, req: falcon.Request, resp: falcon.Response, name: str, dagRunId: str
    ) -> None:
        """Dagu's outputs.json document of the run."""
        run = _run(self.ctx, name, dagRunId)
        resp.media = outputs_document(self.ctx.stores.get(), run)

    on_head_outputs = on_get_outputs

    def on_get_subruns(
        self, req: falcon.Request, resp: falcon.Response, name: str, dagRunId: str
    ) -> None:
        """`{subRuns: [...]}`: runs started by `call:` steps of this run."""
        run = _run(self.ctx, name, dagRunId)
        subs = self.ctx.stores.get().list_sub_runs(run.dag_name, run.run_id)
        resp.media = {
            "subRuns": [
                {
                    "dagRunId": s.run_id,
                    "name": s.dag_name,
                    "params": " ".join(s.params),
                    "status": int(s.status),
                    "statusLabel": s.status.label,
                    "startedAt": rfc3339(s.started_at),
                    "finishedAt": rfc3339(s.finished_at),
                }
                for s in subs
            ]
        }

    on_head_subruns = on_get_subruns


def _line_count(req: falcon.Request, name: str) -> int | None:
    """`tail`, `head` or `limit`: Dagu's spec puts no upper bound on the first two (and 10,000
    on `limit`), so a larger count reads as many lines as we serve, not a 400."""
    value = params.int_param(req, name, minimum=1)
    return None if value is None else min(value, MAX_LINES)


def _page_params(req: falcon.Request) -> dict[str, int | None]:
    return {
        "tail": _line_count(req, "tail"),
        "head": _line_count(req, "head"),
        "offset": params.int_param(req, "offset", minimum=1),
        "limit": params.int_param(req, "limit", minimum=1, maximum=MAX_LINES),
    }


class RunLogs:
    """GET …/log (the run's own log) and …/steps/{stepName}/log (a step's stdout/stderr)."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def _roots(self, run: RunRecord) -> list[Path]:
        roots = [self.ctx.settings.log_dir]
        entry = self.ctx.catalog.find_dag(run.dag_name)
        if entry is not None and entry.dag is not None and entry.dag.spec.log_dir:
            log_dir = Path(entry.dag.spec.log_dir).expanduser()
            if not log_dir.is_absolute():
                log_dir = entry.path.parent / log_dir
            roots.append(log_dir)
        return roots

    def _serve(
        self, resp: falcon.Response, req: falcon.Request, run: RunRecord, recorded: str, what: str
    ) -> None:
        page = _page_params(req)  # validate before touching any file
        if not recorded:
            raise NotFoundError(f"{what} has no log file (yet)")
        path = contained_path(recorded, self._roots(run))
        if path is None:
            # Written on another host (a worker): the copy it shipped when the run ended.
            shipped = self.ctx.stores.get().get_log_blob(recorded)
            if shipped is None:
                raise NotFoundError(f"{what}: log file not found in the log directory")
            resp.media = read_log(shipped[0], **page)
            return
        try:
            resp.media = read_log(path, **page)
        except OSError as exc:
            raise NotFoundError(f"{what}: log file cannot be read: {exc.strerror}") from None

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str, dagRunId: str) -> None:
        """The run log, paged by `tail`, `head`, `offset` (1-based line) and `limit`."""
        run = _run(self.ctx, name, dagRunId)
        _page_params(req)
        self._serve(resp, req, run, run.log_file, f"run {run.run_id}")

    on_head = on_get

    def on_get_step(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        name: str,
        dagRunId: str,
        stepName: str,
    ) -> None:
        """A step's `stream` (stdout, the default, or stderr), paged like the run log. The
        step name is only looked up among the run's steps, never made into a path."""
        stream = params.choice_param(req, "stream", ("stdout", "stderr"), "stdout")
        _page_params(req)
        run = _run(self.ctx, name, dagRunId)
        step = _find_step(self.ctx.stores.get().list_steps(run.id), stepName)
        if step is None:
            raise NotFoundError(f"step {stepName!r} not found in run {run.run_id}")
        recorded = step.stdout if stream == "stdout" else step.stderr
        self._serve(resp, req, run, recorded, f"step {stepName!r} ({stream})")

    on_head_step = on_get_step


def _find_step(steps: list[StepRecord], name: str) -> StepRecord | None:
    for kind_first in (True, False):
        for s in steps:
            if s.name == name and (s.kind == "step") == kind_first:
                return s
    return None
