"""The read-only web dashboard's static files: `index.html` at `/`, assets under `/ui/`.

Owns the HTTP side of the dashboard only: the pages themselves are plain files in `api/static/`
(vanilla JS, no build step) that read the public `/api/v2` endpoints like any other client.
`api.app.create_app` calls `add_dashboard_routes(app)` once; the app's auth middleware covers
these routes like the API's, so a browser gets the basic-auth prompt from the 401 it answers.

What may be served is decided once, at start-up: the regular files directly inside
`api/static` with a known extension. A request names one of those or gets 404, so no path,
symlink or encoding trick can reach anything else. Contents are read at start-up too (a few
tens of KB) and answered with an ETag; `index.html` refers to each asset with `?v=<hash>`, so
assets may be cached for a long time while a new release is picked up on the next page load.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import falcon

STATIC_DIR = Path(__file__).resolve().parent / "static"

# Only these extensions are served; anything else in the folder stays private.
CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}

# The pages need nothing but their own origin: no inline script, no CDN, no frames.
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

# Revalidate every time (cheap: a 304) unless the URL carries the current content hash.
CACHE_REVALIDATE = "no-cache"
CACHE_IMMUTABLE = "private, max-age=31536000, immutable"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ASSET_REF = re.compile(r'(?P<attr>(?:src|href))="(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)"')


@dataclass(frozen=True)
class StaticFile:
    """One servable file: its bytes, content type and strong ETag (a content hash)."""

    body: bytes
    content_type: str
    etag: str

    @property
    def version(self) -> str:
        """The short hash used as `?v=` in asset URLs."""
        return self.etag.strip('"')[:12]


def load_static_files(directory: Path = STATIC_DIR) -> dict[str, StaticFile]:
    """Read the servable files of `directory` (regular files, safe names, known types).

    `index.html` has its references to sibling assets (`src="app.js"`) rewritten to
    `/ui/app.js?v=<hash>`, so browsers fetch a new asset exactly when it changed.
    """
    files: dict[str, StaticFile] = {}
    if not directory.is_dir():
        return files
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix.lower())
        # is_symlink first: a link could point anywhere, so it is never served.
        if path.is_symlink() or not path.is_file() or content_type is None:
            continue
        if not _SAFE_NAME.match(path.name):
            continue
        body = path.read_bytes()
        files[path.name] = StaticFile(body, content_type, _etag(body))
    index = files.get("index.html")
    if index is not None:
        body = _version_asset_refs(index.body.decode("utf-8"), files).encode("utf-8")
        files["index.html"] = StaticFile(body, index.content_type, _etag(body))
    return files


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _version_asset_refs(html: str, files: dict[str, StaticFile]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        asset = files.get(name)
        if asset is None or name == "index.html":
            return match.group(0)
        return f'{match.group("attr")}="/ui/{name}?v={asset.version}"'

    return _ASSET_REF.sub(replace, html)


class StaticResource:
    """GET/HEAD of one file from a fixed table; every other method answers 405 (Falcon)."""

    def __init__(self, files: dict[str, StaticFile]) -> None:
        self._files = files

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str = "index.html") -> None:
        """Answer the file `name` (404 when it is not in the table), honouring If-None-Match."""
        asset = self._files.get(name)
        if asset is None:
            raise falcon.HTTPNotFound(description=f"no dashboard file {name!r}")
        for header, value in SECURITY_HEADERS.items():
            resp.set_header(header, value)
        resp.etag = asset.etag
        versioned = name != "index.html" and req.get_param("v") == asset.version
        resp.cache_control = [CACHE_IMMUTABLE if versioned else CACHE_REVALIDATE]
        if_none_match = req.if_none_match
        if if_none_match and any(str(tag) == asset.etag.strip('"') for tag in if_none_match):
            # A 304 carries no body, hence no Content-Type either (RFC 9110 15.4.5).
            resp.status = falcon.HTTP_304
            return
        resp.content_type = asset.content_type
        resp.data = asset.body

    def on_head(self, req: falcon.Request, resp: falcon.Response, name: str = "index.html") -> None:
        """Like GET; Falcon sends no body for HEAD but keeps Content-Length."""
        self.on_get(req, resp, name)


class _RedirectToIndex:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise falcon.HTTPMovedPermanently("/")

    on_head = on_get


def add_dashboard_routes(
    app: falcon.App[falcon.Request, falcon.Response], *, directory: Path = STATIC_DIR
) -> None:
    """Serve the dashboard: `index.html` at `/` and `/ui/`, the other files at `/ui/{name}`.

    Only GET and HEAD are answered; the files are those of `directory` at the time of the call.
    """
    resource = StaticResource(load_static_files(directory))
    app.add_route("/", resource)
    app.add_route("/ui/{name}", resource)
    # The API's app strips trailing slashes, so this also answers `/ui/`.
    app.add_route("/ui", _RedirectToIndex())
