"""The dashboard's static files as served by the API app: index at `/`, assets under `/ui/`,
content types, caching (ETag, 304, versioned immutable assets), GET/HEAD only, nothing outside
`api/static`, the same auth as the API, and the size budget."""

from __future__ import annotations

import base64
import gzip
import re
from pathlib import Path

import falcon.testing
import pytest

from api.dashboard import CACHE_IMMUTABLE, CACHE_REVALIDATE, STATIC_DIR, load_static_files
from tests.api.conftest import Home, make_client, make_home


def asset_urls(client: falcon.testing.TestClient) -> dict[str, str]:
    """Asset name -> the versioned URL that index.html refers to it by."""
    html = client.simulate_get("/").text
    return {m.group(2): m.group(1) for m in re.finditer(r'"(/ui/([\w.-]+)\?v=\w+)"', html)}


def test_index_is_served_at_root_with_security_headers(client: falcon.testing.TestClient) -> None:
    resp = client.simulate_get("/")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    assert resp.headers["cache-control"] == CACHE_REVALIDATE
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in resp.headers["content-security-policy"]
    assert '<main id="main"' in resp.text


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
def test_assets_have_their_content_type_and_long_cache_when_versioned(
    client: falcon.testing.TestClient, name: str, content_type: str
) -> None:
    url = asset_urls(client)[name]
    resp = client.simulate_get(url.split("?")[0], query_string=url.split("?")[1])
    assert resp.status_code == 200
    assert resp.headers["content-type"] == content_type
    assert resp.headers["cache-control"] == CACHE_IMMUTABLE
    assert resp.content == (STATIC_DIR / name).read_bytes()
    # Without the current version the browser must revalidate.
    stale = client.simulate_get(f"/ui/{name}", query_string="v=0123456789ab")
    assert stale.headers["cache-control"] == CACHE_REVALIDATE


def test_etag_revalidation_answers_304_without_body(client: falcon.testing.TestClient) -> None:
    first = client.simulate_get("/ui/app.js")
    etag = first.headers["etag"]
    again = client.simulate_get("/ui/app.js", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    changed = client.simulate_get("/ui/app.js", headers={"If-None-Match": '"something-else"'})
    assert changed.status_code == 200


def test_head_has_headers_but_no_body(client: falcon.testing.TestClient) -> None:
    resp = client.simulate_head("/ui/app.css")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/css; charset=utf-8"
    assert resp.content == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_only_get_and_head(client: falcon.testing.TestClient, method: str) -> None:
    for path in ("/", "/ui/app.js"):
        assert client.simulate_request(method, path).status_code == 405


@pytest.mark.parametrize(
    "path",
    [
        "/ui/dashboard.py",
        "/ui/..%2Fdashboard.py",
        "/ui/%2e%2e%2fapp.py",
        "/ui/../app.py",
        "/ui/.hidden.js",
        "/ui/nope.js",
        "/ui/app.js/x",
        "/ui/%2Fetc%2Fpasswd",
        "/index.html/../../etc/passwd",
    ],
)
def test_nothing_outside_the_static_folder_is_served(
    client: falcon.testing.TestClient, path: str
) -> None:
    resp = client.simulate_get(path)
    assert resp.status_code == 404
    assert b"import" not in resp.content and b"root:" not in resp.content


def test_ui_folder_redirects_to_the_index(client: falcon.testing.TestClient) -> None:
    for path in ("/ui", "/ui/"):
        resp = client.simulate_get(path)
        assert resp.status_code == 301
        assert resp.headers["location"] == "/"


def test_only_regular_safe_files_are_servable(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text('<script src="app.js"></script><a href="x.py">')
    (tmp_path / "app.js").write_text("1")
    (tmp_path / "x.py").write_text("secret = 1")
    (tmp_path / ".env.js").write_text("hidden")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.js").symlink_to(tmp_path / "x.py")
    files = load_static_files(tmp_path)
    assert set(files) == {"index.html", "app.js"}
    html = files["index.html"].body.decode()
    assert f'src="/ui/app.js?v={files["app.js"].version}"' in html
    assert 'href="x.py"' in html  # not a servable file: left as written


def test_dashboard_is_behind_the_api_auth(tmp_path: Path) -> None:
    home: Home = make_home(
        tmp_path, DAGU_AUTH_BASIC_USERNAME="admin", DAGU_AUTH_BASIC_PASSWORD="pw"
    )
    client = make_client(home)
    for path in ("/", "/ui/app.js"):
        resp = client.simulate_get(path)
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"].startswith("Basic")
    token = base64.b64encode(b"admin:pw").decode()
    assert client.simulate_get("/", headers={"Authorization": f"Basic {token}"}).status_code == 200


def test_dashboard_files_are_open_with_the_token_alone_the_api_is_not(tmp_path: Path) -> None:
    # a browser cannot send a bearer token with a page load: the page signs in by itself
    client = make_client(make_home(tmp_path, DAGU_AUTH_TOKEN="tok-static-1"))
    for path in ("/", "/ui/app.js", "/ui/pure.js"):
        assert client.simulate_get(path).status_code == 200, path
    refused = client.simulate_get("/api/v2/dags")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer realm="dagloop"'
    bearer = {"Authorization": "Bearer tok-static-1"}
    assert client.simulate_get("/api/v2/dags", headers=bearer).status_code == 200


def test_dashboard_fits_the_size_budget() -> None:
    total = sum(len(gzip.compress(p.read_bytes())) for p in STATIC_DIR.iterdir() if p.is_file())
    assert total < 150 * 1024, f"{total} bytes gzipped"
