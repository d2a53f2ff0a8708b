"""The `http` step executor, for steps and for `handlerOn` handlers (Slack, PagerDuty, ...).

Called by the runner for a step whose executor type is `http`. Two forms are accepted:
- the seed's: `executor: {type: http, config: {url, method, headers, query, body, timeout,
  silent}}`;
- Dagu's: `type: http`, `command: "POST https://..."`, `config: {headers, query, body,
  timeout, silent, json, skipTLSVerify, debug}`.
A `url`/`method` in `config` wins over the command.

Output is Dagu's (`internal/runtime/builtin/http/http.go`): unless `silent: true` (and the
answer is 2xx), the status line (`200 OK`) and the response headers (`Key: value` lines,
sorted) come before the body on stdout; with `json: true` (or `format: json`) stdout is an
indented JSON object `{"status_code", "headers", "body"}` and the body must be JSON.
A non-2xx answer fails the step (exit 1) with `http status code not 2xx: <code>` on stderr;
a transport error or a timeout fails it too.

Differences from Dagu, on purpose: with no method, a request with a body is a POST (the
seed's PagerDuty example has a body and no method) and one without is a GET; a body that is
JSON is sent with `Content-Type: application/json` unless a header says otherwise (Slack
and PagerDuty need it; resty would send `text/plain`); a body given as a YAML map or list is
sent as JSON.

httpx is imported lazily so a run without http steps does not pay for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import httpx

_SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


class HttpStepError(Exception):
    """The step's configuration is unusable (bad timeout, no URL, ...)."""


def _flag(config: Mapping[str, Any], *keys: str) -> bool:
    for key in keys:
        value = config.get(key)
        if isinstance(value, str):
            if value.strip().lower() in ("1", "true", "yes", "on"):
                return True
        elif value:
            return True
    return False


def split_method_url(command: Sequence[str]) -> tuple[str, str]:
    """("POST", "https://x") from `["POST https://x"]` or `["POST", "https://x"]`.

    A lone token that looks like a URL is the URL (method decided later); otherwise it is
    the method, as in Dagu's `splitMethodURL`.
    """
    text = " ".join(command).strip()
    if not text:
        return "", ""
    head, _, rest = text.partition(" ")
    if not rest.strip():
        return ("", head) if "://" in head else (head, "")
    return head, rest.strip()


def _timeout(
    config: Mapping[str, Any], step_timeout: float | None, expand: Callable[[str], str]
) -> float | None:
    """The effective timeout in seconds: the smaller of `config.timeout` and the step's."""
    raw = config.get("timeout")
    limits: list[float] = []
    if raw not in (None, ""):
        try:
            value = float(expand(str(raw)))
        except ValueError:
            raise HttpStepError(f"invalid timeout {raw!r}: expected a number of seconds") from None
        if value > 0:
            limits.append(value)
    if step_timeout is not None and step_timeout > 0:
        limits.append(step_timeout)
    return min(limits) if limits else None


def _string_map(value: Any, what: str, expand: Callable[[str], str]) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if not isinstance(value, Mapping):
        raise HttpStepError(f"{what} must be a map of names to values")
    return {str(k): expand("" if v is None else _scalar(v)) for k, v in value.items()}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _body(value: Any, expand: Callable[[str], str]) -> tuple[bytes | None, bool]:
    """(encoded body or None, whether it is JSON)."""
    if value is None or value == "":
        return None, False
    if isinstance(value, Mapping | list):
        text = expand(json.dumps(value, ensure_ascii=False))
        return text.encode(), True
    text = expand(_scalar(value))
    try:
        json.loads(text)
        is_json = True
    except ValueError:
        is_json = False
    return text.encode(), is_json


def _canonical(name: str) -> str:
    # Go's textproto.CanonicalMIMEHeaderKey, so header lines look like Dagu's.
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _header_map(response: httpx.Response) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in response.headers.multi_items():
        out.setdefault(_canonical(key), []).append(value)
    return dict(sorted(out.items()))


def _text_result(response: httpx.Response, show_meta: bool) -> bytes:
    parts: list[bytes] = []
    if show_meta:
        reason = response.reason_phrase or ""
        parts.append(f"{response.status_code} {reason}".rstrip().encode() + b"\n")
        for key, values in _header_map(response).items():
            for value in values:
                clean = value.replace("\r", " ").replace("\n", " ").strip()
                parts.append(f"{key}: {clean}\r\n".encode())
    parts.append(response.content)
    return b"".join(parts)


def _json_result(response: httpx.Response, show_meta: bool) -> bytes:
    body = json.loads(response.content)  # ValueError when the body is not JSON, as in Dagu
    # Go marshals zero values when silent: status_code 0 and headers null.
    result = {
        "status_code": response.status_code if show_meta else 0,
        "headers": _header_map(response) if show_meta else None,
        "body": body,
    }
    return json.dumps(result, indent=1, ensure_ascii=False).encode()


def _debug_request(stderr: BinaryIO, method: str, url: str, headers: Mapping[str, str]) -> None:
    lines = [f"http: {method} {url}"]
    for key, value in headers.items():
        shown = "*****" if key.lower() in _SENSITIVE_HEADERS else value
        lines.append(f"http: > {key}: {shown}")
    stderr.write(("\n".join(lines) + "\n").encode())


def run_http_step(
    *,
    command: Sequence[str],
    config: Mapping[str, Any],
    expand: Callable[[str], str],
    stdout: BinaryIO,
    stderr: BinaryIO,
    timeout_seconds: float | None,
) -> int:
    """Perform the request an `http` step describes; returns the step's exit code.

    `expand` (the runner's `${VAR}` expander) is applied to the command, url, method, header
    values, query values and body. `timeout_seconds` is the step's remaining time (None: no
    limit); the request is bounded by it and by `config.timeout`.
    """

    def fail(message: str) -> int:
        stderr.write(f"{message}\n".encode())
        stderr.flush()
        return 1

    try:
        cmd_method, cmd_url = split_method_url([expand(c) for c in command])
        url = expand(_scalar(config["url"])).strip() if config.get("url") else cmd_url
        method = expand(_scalar(config["method"])).strip() if config.get("method") else cmd_method
        headers = _string_map(config.get("headers"), "headers", expand)
        query = _string_map(config.get("query"), "query", expand)
        body, body_is_json = _body(config.get("body"), expand)
        timeout = _timeout(config, timeout_seconds, expand)
    except HttpStepError as exc:
        return fail(f"http: {exc}")
    if not url:
        return fail("http: no URL (give `command: METHOD URL` or `config.url`)")
    method = (method or ("POST" if body is not None else "GET")).upper()
    if body is not None and body_is_json and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json"
    silent = _flag(config, "silent")
    as_json = _flag(config, "json") or str(config.get("format", "")).lower() == "json"
    verify = not _flag(config, "skipTLSVerify", "skip_tls_verify", "skipTlsVerify")
    if _flag(config, "debug"):
        _debug_request(stderr, method, url, headers)

    import httpx

    try:
        # Merged into the URL's own query (as resty does); httpx's `params=` would replace it.
        target = httpx.URL(url).copy_merge_params(query) if query else httpx.URL(url)
        with httpx.Client(timeout=timeout, verify=verify, follow_redirects=True) as client:
            response = client.request(method, target, headers=headers, content=body)
    except httpx.TimeoutException:
        return fail(f"http: {method} {url}: timeout after {timeout:g} s")
    except httpx.InvalidURL as exc:
        return fail(f"http: invalid URL {url!r}: {exc}")
    except httpx.HTTPError as exc:
        return fail(f"http: {method} {url}: {exc or type(exc).__name__}")
    except ValueError as exc:  # e.g. a header value that is not ASCII
        return fail(f"http: {exc}")

    success = 200 <= response.status_code < 300
    show_meta = not success or not silent
    try:
        out = _json_result(response, show_meta) if as_json else _text_result(response, show_meta)
    except ValueError as exc:
        stdout.write(response.content)
        stdout.flush()
        return fail(f"http: the response body is not JSON ({exc})")
    stdout.write(out)
    stdout.flush()
    if _flag(config, "debug"):
        stderr.write(f"http: < {response.status_code} {response.reason_phrase}\n".encode())
    if not success:
        return fail(f"http status code not 2xx: {response.status_code}")
    return 0
