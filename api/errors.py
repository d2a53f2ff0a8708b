"""JSON errors of the API: every failure is a `{code, message}` body with the right status.

Resources raise `ApiError` subclasses (or let `NotFound` from the store escape); `install`
registers the handlers once on the app, including a catch-all so that no request ever ends
in an empty 500. Called by `api.app.create_app`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import falcon

from controller.store.records import NotFound

log = logging.getLogger("dagloop.api")

ALLOWED_METHODS = "GET, HEAD"

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answered as JSON `{code, message}` with `status`."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ApiError):
    """A query or path parameter is invalid (400)."""

    status = 400
    code = "bad_request"


class NotFoundError(ApiError):
    """An unknown DAG, run, step or log (404)."""

    status = 404
    code = "not_found"


class Unauthorized(ApiError):
    """Missing or wrong credentials (401)."""

    status = 401
    code = "unauthorized"


class Unavailable(ApiError):
    """The data behind this endpoint is not available in this process (503)."""

    status = 503
    code = "unavailable"


def _write(resp: falcon.Response, status: int, code: str, message: str) -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps({"code": code, "message": message})


def _api_error(req: falcon.Request, resp: falcon.Response, ex: ApiError, params: Any) -> None:
    _write(resp, ex.status, ex.code, ex.message)
    for name, value in ex.headers.items():
        resp.set_header(name, value)


def _not_found(req: falcon.Request, resp: falcon.Response, ex: NotFound, params: Any) -> None:
    _write(resp, 404, "not_found", str(ex))


def _http_error(
    req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError, params: Any
) -> None:
    status = int(ex.status_code)
    if status == 405:
        # Every route serves GET and HEAD only; say so whatever falcon computed.
        _write(resp, 405, "method_not_allowed", f"method {req.method} is not allowed; use GET")
        resp.set_header("Allow", ALLOWED_METHODS)
        return
    if status == 404:
        message = ex.description or f"no such endpoint: {req.path}"
    else:
        message = ex.description or ex.title or "error"
    _write(
        resp,
        status,
        _CODES.get(status, "bad_request" if status < 500 else "internal_error"),
        message,
    )
    headers = ex.headers or {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if name.lower() != "content-type":
            resp.set_header(name, value)


def _unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    log.exception(
        "unexpected error serving a request", extra={"method": req.method, "path": req.path}
    )
    _write(resp, 500, "internal_error", "internal error; see the server log")


def install(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    """Register the error handlers (most specific last, as falcon matches by MRO)."""
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(NotFound, _not_found)
    app.add_error_handler(ApiError, _api_error)
