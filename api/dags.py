"""DAG endpoints: `/dags`, `/dags/tags`, `/dags/{fileName}`, `/dags/{fileName}/spec`,
`/dags/{fileName}/dag-runs[/{dagRunId}]`. Served from the cached catalog and the read-only
store. Routed by `api.app.create_app`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import falcon

from api import params
from api.dagview import dag_details, dag_summary, run_config
from api.errors import BadRequest, NotFoundError
from api.state import ApiContext
from controller.catalog import CatalogEntry
from controller.store.filters import RunFilter
from controller.store.records import NotFound
from controller.views.runs import rfc3339, run_details, run_summary

HISTORY_LENGTH = 30  # runs shown by /dags/{fileName}/dag-runs, as Dagu's UI grid


def _errors(entry: CatalogEntry) -> list[str]:
    return [str(e) for e in entry.errors]


def _entry(ctx: ApiContext, file_name: str) -> CatalogEntry:
    params.dag_name(file_name, "fileName")
    entry = ctx.catalog.get(file_name)
    if entry is None:
        raise NotFoundError(f"DAG {file_name!r} not found")
    return entry


def empty_summary(name: str) -> dict[str, Any]:
    """The summary of a DAG that never ran: status 0 (not_started), empty fields, as Dagu."""
    return {
        "rootDAGRunName": name,
        "rootDAGRunId": "",
        "dagRunId": "",
        "name": name,
        "status": 0,
        "statusLabel": "not_started",
        "queuedAt": "",
        "startedAt": "",
        "finishedAt": "",
        "log": "",
        "params": "",
        "workerId": "",
    }


def _fallback_dag(entry: CatalogEntry) -> dict[str, Any]:
    """The `dag` object of a file that did not load: its name and empty fields."""
    return {
        "name": entry.file_name,
        "group": "",
        "description": "",
        "params": [],
        "defaultParams": "",
        "tags": [],
        "schedule": [],
        "queue": entry.file_name,
        "maxActiveRuns": 1,
        "runConfig": run_config(None),
    }


class DagList:
    """GET /api/v2/dags: paginated, filtered by name substring and tag, sorted."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """List DAG files with their load errors, next run and latest run summary."""
        page, per_page = params.page_params(req, default_per_page=50)
        name = params.str_param(req, "name")
        tag = params.str_param(req, "tag")
        sort = params.choice_param(req, "sort", ("name", "nextRun"), "name")
        order = params.choice_param(req, "order", ("asc", "desc"), "asc")
        now = datetime.fromtimestamp(self.ctx.clock(), UTC)

        entries = self.ctx.catalog.entries()
        if name:
            needle = name.lower()
            entries = [
                e for e in entries if needle in e.name.lower() or needle in e.file_name.lower()
            ]
        if tag:
            wanted = tag.strip().lower()
            entries = [e for e in entries if e.dag is not None and wanted in e.dag.spec.tags]
        if sort == "nextRun":
            far = datetime.max.replace(tzinfo=UTC)
            keyed = [(self.ctx.catalog.next_run(e, now) or far, e.file_name, e) for e in entries]
            keyed.sort(key=lambda k: (k[0], k[1]), reverse=order == "desc")
            entries = [k[2] for k in keyed]
        else:
            entries = sorted(entries, key=lambda e: e.name.lower(), reverse=order == "desc")

        total = len(entries)
        page_entries = entries[(page - 1) * per_page : page * per_page]
        latest = self.ctx.stores.get().latest_runs([e.name for e in page_entries])
        items = []
        for e in page_entries:
            next_run = self.ctx.catalog.next_run(e, now)
            run = latest.get(e.name)
            items.append(
                {
                    "fileName": e.file_name,
                    "suspended": False,
                    "errors": _errors(e),
                    "dag": dag_summary(e.dag) if e.dag is not None else _fallback_dag(e),
                    "nextRun": rfc3339(next_run.timestamp()) if next_run else "",
                    "latestDAGRun": run_summary(run) if run is not None else empty_summary(e.name),
                }
            )
        resp.media = {
            "dags": items,
            "errors": [],
            "pagination": params.pagination(page, per_page, total),
        }

    on_head = on_get


class DagTags:
    """GET /api/v2/dags/tags: every tag in use, sorted."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """`{tags: [...], errors: []}`."""
        tags = {t for e in self.ctx.catalog.entries() if e.dag is not None for t in e.dag.spec.tags}
        resp.media = {"tags": sorted(tags), "errors": []}

    on_head = on_get


class DagDetail:
    """GET /api/v2/dags/{fileName}: `{dag, latestDAGRun, suspended, localDags, errors}`."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, fileName: str) -> None:
        """The DAG's definition (secrets masked) and its latest run's details."""
        entry = _entry(self.ctx, fileName)
        patterns = self.ctx.settings.secret_patterns
        store = self.ctx.stores.get()
        try:
            latest = run_details(store, store.get_run(entry.name, "latest"))
        except NotFound:
            latest = {**empty_summary(entry.name), "nodes": [], "preconditions": []}
        if entry.dag is not None:
            dag = dag_details(entry.dag, secret_patterns=patterns)
            local = [
                {"name": name, "dag": dag_details(sub, secret_patterns=patterns), "errors": []}
                for name, sub in sorted(entry.dag.local_dags.items())
            ]
        else:
            dag, local = _fallback_dag(entry), []
        resp.media = {
            "dag": dag,
            "latestDAGRun": latest,
            "suspended": False,
            "localDags": local,
            "errors": _errors(entry),
        }

    on_head = on_get


class DagSpecText:
    """GET /api/v2/dags/{fileName}/spec: the YAML text as written, plus load errors."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, fileName: str) -> None:
        """`{spec, errors}`."""
        entry = _entry(self.ctx, fileName)
        resp.media = {"spec": _file_text(self.ctx, entry), "errors": _errors(entry)}

    on_head = on_get


def _file_text(ctx: ApiContext, entry: CatalogEntry) -> str:
    """The DAG file's text as written: the catalog's copy, else the file the catalog found
    (never a path built from the request), at most `max_dag_file_bytes` of it."""
    if entry.dag is not None and entry.dag.source:
        return entry.dag.source
    try:
        with entry.path.open("rb") as f:
            raw = f.read(ctx.settings.max_dag_file_bytes)
    except OSError as exc:
        what = f"DAG file {entry.file_name!r}"
        raise NotFoundError(f"{what} cannot be read: {exc.strerror}") from None
    return raw.decode("utf-8", "replace")


SEARCH_CONTEXT_LINES = 2  # lines shown before and after a matching line, as Dagu


def search_matches(text: str, needle: str) -> list[dict[str, Any]]:
    """Dagu's `SearchDAGsMatchItem`s of the lines of `text` holding `needle` (case-insensitive):
    the line's number and the line with its context (`startLine` is the context's first)."""
    lines = text.splitlines()
    wanted = needle.casefold()
    matches = []
    for index, line in enumerate(lines):
        if wanted in line.casefold():
            start = max(index - SEARCH_CONTEXT_LINES, 0)
            context = lines[start : index + SEARCH_CONTEXT_LINES + 1]
            matches.append(
                {"line": "\n".join(context), "lineNumber": index + 1, "startLine": start + 1}
            )
    return matches


class DagSearch:
    """GET /api/v2/dags/search?q=: the DAG files whose text holds `q`, with the lines."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """`{results: [{name, dag, matches}], errors}`, by file name. `q` is text, not a
        pattern (Dagu takes an RE2 regular expression; Python's engine backtracks, so a
        pattern could hold a serving thread for ever). Files that did not load are searched
        too. An empty `q` matches nothing."""
        needle = req.get_param("q")
        if needle is None:
            raise BadRequest("query parameter 'q' is required")
        results, errors = [], []
        for entry in self.ctx.catalog.entries() if needle else []:
            try:
                matches = search_matches(_file_text(self.ctx, entry), needle)
            except NotFoundError as exc:  # the file went away or cannot be read
                errors.append(exc.message)
                continue
            if matches:
                dag = dag_summary(entry.dag) if entry.dag is not None else _fallback_dag(entry)
                results.append({"name": entry.name, "dag": dag, "matches": matches})
        resp.media = {"results": results, "errors": errors}

    on_head = on_get


def grid(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dagu's gridData: per step name, its status in each run (oldest first; 0 when absent)."""
    runs = list(reversed(details))
    names: list[str] = []
    for d in runs:
        for node in d["nodes"]:
            if node["step"]["name"] not in names:
                names.append(node["step"]["name"])
    rows = []
    for name in names:
        history = []
        for d in runs:
            status = next((n["status"] for n in d["nodes"] if n["step"]["name"] == name), 0)
            history.append(status)
        rows.append({"name": name, "history": history})
    return rows


class DagRunHistory:
    """GET /api/v2/dags/{fileName}/dag-runs[/{dagRunId}]."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, fileName: str) -> None:
        """`{dagRuns: [details], gridData: [{name, history}]}`, newest first."""
        entry = _entry(self.ctx, fileName)
        store = self.ctx.stores.get()
        runs = store.list_runs(RunFilter(dag_name=entry.name), limit=HISTORY_LENGTH)
        details = [run_details(store, r) for r in runs]
        resp.media = {"dagRuns": details, "gridData": grid(details)}

    on_head = on_get

    def on_get_one(
        self, req: falcon.Request, resp: falcon.Response, fileName: str, dagRunId: str
    ) -> None:
        """`{dagRun: details}`; `latest` is the most recent run."""
        entry = _entry(self.ctx, fileName)
        params.run_id(dagRunId)
        store = self.ctx.stores.get()
        resp.media = {"dagRun": run_details(store, store.get_run(entry.name, dagRunId))}

    on_head_one = on_get_one
