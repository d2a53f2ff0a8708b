"""Validation of path and query parameters: every value is checked before it is used, and
none ever becomes part of a file path. Called by the resources.
"""

from __future__ import annotations

import re

import falcon

from api.errors import BadRequest

NAME_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,255}$")
RUN_ID_RE = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")


def dag_name(value: str, what: str = "DAG name") -> str:
    """A DAG name or file name: letters, digits, `_`, `.`, `-`, and not only dots."""
    if not NAME_RE.match(value) or set(value) == {"."}:
        raise BadRequest(f"invalid {what} {value!r}: use letters, digits, '_', '.' and '-'")
    return value


def run_id(value: str) -> str:
    """A run id (`^[-a-zA-Z0-9_]+$`, at most 64 characters) or `latest`."""
    if not RUN_ID_RE.match(value):
        raise BadRequest(f"invalid dagRunId {value!r}: use letters, digits, '-' and '_'")
    return value


def step_name(value: str) -> str:
    """A step name: any text up to 255 characters. It is only looked up among the run's
    steps (a name that is not there, NUL included, is a 404), never made into a path."""
    if not value or len(value) > 255:
        raise BadRequest(f"invalid stepName {value!r}")
    return value


def int_param(
    req: falcon.Request,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    default: int | None = None,
) -> int | None:
    """Query parameter `name` as an integer within bounds; `default` when absent."""
    raw = req.get_param(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be an integer, got {raw!r}") from None
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


def str_param(req: falcon.Request, name: str) -> str | None:
    """Query parameter `name` as text, None when absent or empty. Used only as a filter
    value (compared, never a path), so any text is acceptable."""
    raw = req.get_param(name)
    if raw is None or raw == "":
        return None
    return raw
