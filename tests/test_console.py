"""The web console over HTTP (no browser): sign-in, the session cookie, CSRF, the security
headers, the asset folders, and the cookie accepted by the API through the same gate."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service_fixtures import Service, build_service

from flowatlas.console.router import CSP, local_path
from flowatlas.console.sessions import SessionStore


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from build_service(tmp_path_factory.mktemp("console"))


def signin_form(client: httpx.Client) -> str:
    page = client.get("/signin")
    assert page.status_code == 200
    m = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert m, page.text
    return m.group(1)


def signed_in(svc: Service, tenant: str) -> httpx.Client:
    client = httpx.Client(base_url=svc.url, timeout=30)
    token = signin_form(client)
    r = client.post("/signin", data={"api_key": svc.keys[tenant], "csrf": token, "next": "/"})
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    return client


def page_csrf(client: httpx.Client, path: str = "/") -> str:
    m = re.search(r'name="fa-csrf" content="([^"]+)"', client.get(path).text)
    assert m
    return m.group(1)


def test_signin_page_has_one_api_key_field_and_security_headers(svc: Service) -> None:
    with httpx.Client(base_url=svc.url) as client:
        r = client.get("/signin")
        assert '<label for="api_key">API key</label>' in r.text
        assert r.text.count("<input") == 3  # the key, and two hidden fields
        assert r.headers["content-security-policy"] == CSP
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP.split("script-src")[1]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "<script>" not in r.text  # no inline script anywhere in the page
        # The API's answers carry the same headers.
        assert client.get("/health").headers["content-security-policy"] == CSP


def test_pages_need_a_session(svc: Service) -> None:
    with httpx.Client(base_url=svc.url) as client:
        for path in ("/", "/ip/198.51.100.3", "/explore?filter=port%2053", "/graph", "/trace"):
            r = client.get(path)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/signin?next=%2F"), path


def test_session_cookie_is_httponly_strict_and_the_key_never_returns(svc: Service) -> None:
    client = signed_in(svc, "ops")
    cookie = next(h for h in client.cookies.jar if h.name == "fa_session")
    assert cookie.value != svc.keys["ops"] and svc.keys["ops"] not in cookie.value
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite") == "strict"
    page = client.get("/ip/198.51.100.3")
    assert page.status_code == 200
    assert svc.keys["ops"] not in page.text
    assert page.headers["cache-control"] == "no-store"
    # The API accepts the session in place of the key, through the gate (the tenant's scope).
    assert client.get("/v1/usage").json()["tenant"] == "ops"


def test_wrong_key_is_refused_and_the_message_is_escaped(svc: Service) -> None:
    with httpx.Client(base_url=svc.url) as client:
        token = signin_form(client)
        r = client.post("/signin", data={"api_key": "fa_<b>x</b>_y", "csrf": token})
        assert r.status_code == 401
        assert "<b>x</b>" not in r.text
        assert "fa_session" not in r.headers.get("set-cookie", "")


def test_signin_without_the_form_token_is_refused(svc: Service) -> None:
    # Login CSRF: a form posted from another site has no fa_signin cookie to match.
    with httpx.Client(base_url=svc.url) as client:
        r = client.post("/signin", data={"api_key": svc.keys["ops"], "csrf": "guess"})
        assert r.status_code == 403
        assert "fa_session" not in r.headers.get("set-cookie", "")


def test_cookie_post_without_csrf_token_is_refused_and_audited(svc: Service) -> None:
    client = signed_in(svc, "soc")
    r = client.post("/v1/reveal?purpose=case-1", json={"pseudonym": "100.64.0.1"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    refusals = [e for e in httpx.get(f"{svc.url}/v1/audit?limit=10000",
                                     headers={"X-API-Key": svc.keys["watch"]}).json()["entries"]
                if e.get("outcome") == "error:csrf_failed"]
    assert refusals and refusals[-1]["tenant"] == "soc"
    # With the page's token the same request reaches the route (404: not a pseudonym of ours).
    r = client.post("/v1/reveal?purpose=case-1", json={"pseudonym": "100.64.0.1"},
                    headers={"X-CSRF-Token": page_csrf(client)})
    assert r.status_code in (200, 404), r.text
    assert r.json().get("error", {}).get("code") != "csrf_failed"


def test_signout_needs_the_token_and_ends_the_session(svc: Service) -> None:
    client = signed_in(svc, "ops")
    assert client.post("/signout", data={}).status_code == 403
    assert client.get("/v1/usage").status_code == 200  # still signed in
    r = client.post("/signout", data={"csrf": page_csrf(client)})
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    assert client.get("/v1/usage").status_code == 401
    assert client.get("/").status_code == 303


def test_old_cookie_is_dead_after_signout(svc: Service) -> None:
    client = signed_in(svc, "ops")
    stolen = client.cookies.get("fa_session")
    client.post("/signout", data={"csrf": page_csrf(client)})
    r = httpx.get(f"{svc.url}/v1/usage", cookies={"fa_session": stolen or ""})
    assert r.status_code == 401


def test_next_is_a_local_path_only() -> None:
    assert local_path("/ip/1.2.3.4?since=7d") == "/ip/1.2.3.4?since=7d"
    for bad in ("//evil.example/", "https://evil.example/", "/\\evil.example", "", None,
                "/signin?next=/"):
        assert local_path(bad) == "/", bad


def test_assets_are_served_and_nothing_else(svc: Service) -> None:
    with httpx.Client(base_url=svc.url) as client:
        js = client.get("/static/app.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        echarts = client.get("/vendor/echarts/dist/echarts.esm.min.mjs")
        assert echarts.status_code == 200
        assert echarts.headers["content-type"].startswith("text/javascript")
        for bad in ("/vendor/echarts/package.json", "/vendor/tslib/tslib.js",
                    "/vendor/echarts/dist/../../../package.json", "/static/../router.py",
                    "/static/.hidden.js", "/vendor/@scarf/scarf/report.js"):
            assert client.get(bad).status_code == 404, bad


def test_docs_load_nothing_from_another_host(svc: Service) -> None:
    with httpx.Client(base_url=svc.url) as client:
        docs = client.get("/docs")
        assert docs.status_code == 200
        assert not re.search(r"(src|href)=\"(https?:)?//", docs.text), docs.text
        for ref in re.findall(r'(?:src|href)="(/[^"]+)"', docs.text):
            assert client.get(ref).status_code == 200, ref
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/redoc").status_code in (303, 404)


def test_sessions_expire_and_stay_bounded() -> None:
    now = [1000.0]
    store = SessionStore(clock=lambda: now[0], idle_seconds=10, max_age_seconds=100, capacity=2)
    a, _ = store.create("k1", "t", "admin")
    now[0] += 9
    assert store.get(a) is not None
    now[0] += 11
    assert store.get(a) is None  # idle too long
    b, _ = store.create("k2", "t", "admin")
    for _ in range(12):
        now[0] += 9
        store.get(b)
    assert store.get(b) is None  # older than max_age although used
    ids = [store.create(f"k{i}", "t", "admin")[0] for i in range(3)]
    assert len(store) == 2 and store.get(ids[0]) is None and store.get(ids[2]) is not None
    assert store.get("") is None and store.get(None) is None


def test_demo_prints_the_console_url() -> None:
    demo = (Path(__file__).resolve().parents[1] / "scripts" / "demo.sh").read_text()
    assert "web console on http://127.0.0.1:$PORT/" in demo and "console_assets" in demo
