"""Validation of path and query parameters: every value is checked before it is used, and
none ever becomes part of a file path. Called by the resources.

Dagu's OpenAPI document (v1.30.2, `api/v2/api.yaml`) is the contract: a value it allows is never
refused here (a name or id that matches nothing is a 404 later, a page or line count past the
end gives less), and a value it forbids is a 400 with the JSON error body.
"""

from __future__ import annotations

import math
import re

import falcon

from api.errors import BadRequest

# Dagu's `DAGName`/`DAGFileName` patterns plus `.`, which dagloop's file names may hold.
NAME_RE = re.compile(r"^[a-zA-Z0-9_.-]+$")
RUN_ID_RE = re.compile(r"^[-a-zA-Z0-9_]+$")  # Dagu's `DAGRunId`
# An integer as Go's strconv.ParseInt reads it: Python's int() would also take "1_000", " 5"
# and other digits than ASCII ones, which the spec's clients never send as integers.
INT_RE = re.compile(r"^[+-]?[0-9]+$")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_PER_PAGE = 1000  # Dagu's `PerPage` maximum


def dag_name(value: str, what: str = "DAG name") -> str:
    """A DAG name or file name: letters, digits, `_`, `.`, `-`, and not only dots."""
    if not NAME_RE.match(value) or set(value) == {"."}:
        raise BadRequest(f"invalid {what} {value!r}: use letters, digits, '_', '.' and '-'")
    return value


def run_id(value: str, what: str = "dagRunId") -> str:
    """A run id (`^[-a-zA-Z0-9_]+$`) or `latest`."""
    if not RUN_ID_RE.match(value):
        raise BadRequest(f"invalid {what} {value!r}: use letters, digits, '-' and '_'")
    return value


def int_param(
    req: falcon.Request,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    default: int | None = None,
    int64: bool = False,
) -> int | None:
    """Query parameter `name` as an integer within bounds; `default` when absent.
    `int64`: the spec declares `format: int64`, so a value outside it is refused."""
    raw = req.get_param(name)
    if raw is None:
        return default
    if not INT_RE.match(raw):
        raise BadRequest(f"query parameter {name!r} must be an integer, got {raw!r}")
    value = int(raw)
    if int64 and not INT64_MIN <= value <= INT64_MAX:
        raise BadRequest(f"query parameter {name!r} must fit in a 64-bit integer")
    if minimum is not None and value < minimum:
        raise BadRequest(f"query parameter {name!r} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise BadRequest(f"query parameter {name!r} must be at most {maximum}")
    return value


def choice_param(req: falcon.Request, name: str, choices: tuple[str, ...], default: str) -> str:
    """Query parameter `name`, one of `choices`."""
    raw = req.get_param(name)
    if raw is None:
        return default
    if raw not in choices:
        raise BadRequest(f"query parameter {name!r} must be one of {', '.join(choices)}")
    return raw


def run_id_param(req: falcon.Request, name: str) -> str | None:
    """Query parameter `name` as a run id (Dagu's `DAGRunId`: empty is not one), or None."""
    raw = req.get_param(name)
    return None if raw is None else run_id(raw, name)


def str_param(req: falcon.Request, name: str) -> str | None:
    """Query parameter `name` as text, None when absent or empty. Used only as a filter
    value (compared, never a path), so any text is acceptable."""
    raw = req.get_param(name)
    if raw is None or raw == "":
        return None
    return raw


def page_params(req: falcon.Request, *, default_per_page: int) -> tuple[int, int]:
    """`page` (from 1) and `perPage` (1 to 1,000). A page past the end is empty, not a 400."""
    page = int_param(req, "page", minimum=1, default=1) or 1
    per_page = int_param(req, "perPage", minimum=1, maximum=MAX_PER_PAGE)
    return page, per_page or default_per_page


def pagination(page: int, per_page: int, total: int) -> dict[str, int]:
    """Dagu's `Pagination` object of page `page` of `total` items."""
    total_pages = math.ceil(total / per_page)
    return {
        "currentPage": page,
        "nextPage": min(page + 1, max(total_pages, 1)),
        "prevPage": max(page - 1, 1),
        "totalPages": total_pages,
        "totalRecords": total,
    }
