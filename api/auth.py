"""Authentication middleware: HTTP basic and static bearer token, as Dagu configures them.

When neither is configured everything is open. When either is, every request needs one of them,
except `/api/v2/health` (always open, for health checks) and `/api/v2/metrics` when
`metrics: public`. Credentials are compared in constant time (`hmac.compare_digest`).
A refusal is a 401 with a JSON body and a `WWW-Authenticate` challenge for the configured scheme:
`Basic` when basic auth is on (the browser then asks for the user and password), else `Bearer`.

With the token alone, the dashboard's files (`/`, `/ui/…`: code, no data) are open: a browser
cannot send a bearer token with a page load, so the dashboard signs in itself and sends the
token with every API call. Installed by `api.app.create_app`.
"""

from __future__ import annotations

import base64
import binascii
import hmac

import falcon

from api.errors import Unauthorized
from model.config import Settings

HEALTH_PATH = "/api/v2/health"
METRICS_PATH = "/api/v2/metrics"
REALM = 'Basic realm="dagloop"'
BEARER_REALM = 'Bearer realm="dagloop"'


def _is_dashboard(path: str) -> bool:
    """The dashboard's files (`api.dashboard`): its index at `/`, the rest under `/ui`."""
    return path == "/" or path == "/ui" or path.startswith("/ui/")


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class AuthMiddleware:
    """Checks `Authorization` on every request but the public paths."""

    def __init__(self, settings: Settings) -> None:
        user, password = settings.auth_basic_username, settings.auth_basic_password
        # Dagu enables basic auth only when both are set.
        self._basic = (user, password) if user and password else None
        self._token = settings.auth_token or None
        self._public = {HEALTH_PATH}
        if settings.metrics_public:
            self._public.add(METRICS_PATH)
        self._dashboard_open = self._basic is None
        self._challenge = REALM if self._basic is not None else BEARER_REALM

    @property
    def enabled(self) -> bool:
        """True when some credential is configured."""
        return self._basic is not None or self._token is not None

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Raise `Unauthorized` unless the request is public or carries valid credentials."""
        if not self.enabled or req.path.rstrip("/") in self._public:
            return
        if self._dashboard_open and _is_dashboard(req.path):
            return
        if self._authorized(req.get_header("Authorization") or ""):
            return
        raise Unauthorized("authentication required", headers={"WWW-Authenticate": self._challenge})

    def _authorized(self, header: str) -> bool:
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        scheme = scheme.lower()
        if scheme == "bearer" and self._token is not None:
            return _equal(value, self._token)
        if scheme == "basic" and self._basic is not None:
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, sep, password = decoded.partition(":")
            if not sep:
                return False
            # Both comparisons always run, so timing does not tell which part was wrong.
            user_ok = _equal(user, self._basic[0])
            password_ok = _equal(password, self._basic[1])
            return user_ok and password_ok
        return False
