"""The auth matrix: none / basic / token / both; health always open; metrics public or not;
401 with WWW-Authenticate and a JSON body; secrets never in a response."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from api.app import PREFIX
from tests.api.conftest import make_client, make_home

USER, PASSWORD, TOKEN = "admin", "s3cret-pass", "tok-abcdef"


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


BEARER = {"Authorization": f"Bearer {TOKEN}"}
CONFIGS = {
    "none": {},
    "basic": {"DAGU_AUTH_BASIC_USERNAME": USER, "DAGU_AUTH_BASIC_PASSWORD": PASSWORD},
    "token": {"DAGU_AUTH_TOKEN": TOKEN},
    "both": {
        "DAGU_AUTH_BASIC_USERNAME": USER,
        "DAGU_AUTH_BASIC_PASSWORD": PASSWORD,
        "DAGU_AUTH_TOKEN": TOKEN,
    },
}
CREDENTIALS = {
    "anonymous": {},
    "basic": basic(USER, PASSWORD),
    "bearer": BEARER,
    "wrong-password": basic(USER, "nope"),
    "wrong-user": basic("root", PASSWORD),
    "wrong-token": {"Authorization": "Bearer tok-abcdeX"},
    "garbage": {"Authorization": "Basic !!!not-base64"},
}


def expected(config: str, credential: str) -> int:
    if config == "none":
        return 200
    if credential == "basic" and config in ("basic", "both"):
        return 200
    if credential == "bearer" and config in ("token", "both"):
        return 200
    return 401


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("credential", list(CREDENTIALS))
def test_auth_matrix(tmp_path: Path, config: str, credential: str) -> None:
    client = make_client(make_home(tmp_path, **CONFIGS[config]))
    headers = CREDENTIALS[credential]
    for path in ("/dags", "/metrics", "/dag-runs", "/dags/hello/spec"):
        got = client.simulate_get(PREFIX + path, headers=headers)
        want = expected(config, credential)
        assert got.status_code == want, (path, got.text)
        if want == 401:
            # a Basic challenge with the token alone would make a browser ask for a user
            scheme = "Basic" if config in ("basic", "both") else "Bearer"
            assert got.headers["www-authenticate"] == f'{scheme} realm="dagloop"'
            assert got.json["code"] == "unauthorized"
    # health is always open
    assert client.simulate_get(PREFIX + "/health", headers=headers).status_code == 200


@pytest.mark.parametrize("public", [True, False])
def test_metrics_public_needs_no_credentials_but_the_rest_does(
    tmp_path: Path, public: bool
) -> None:
    env = dict(CONFIGS["both"])
    if public:
        env["DAGU_SERVER_METRICS"] = "public"
    client = make_client(make_home(tmp_path, **env))
    assert client.simulate_get(PREFIX + "/metrics").status_code == (200 if public else 401)
    assert client.simulate_get(PREFIX + "/dags").status_code == 401


def test_secrets_never_appear_in_any_response(tmp_path: Path) -> None:
    home = make_home(tmp_path, **CONFIGS["both"])
    client = make_client(home)
    for path in (
        "/health",
        "/dags",
        "/dags/hello",
        "/metrics",
        "/queues",
        "/dag-runs",
        "/openapi.yaml",
        "/services/scheduler",
        "/nope",
    ):
        for headers in ({}, BEARER):
            text = client.simulate_get(PREFIX + path, headers=headers).text
            for secret in (PASSWORD, TOKEN, "tok-in-env-123"):
                assert secret not in text, (path, secret)
