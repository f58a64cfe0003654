"""The web console in a real browser: Debian's Chromium driven by Playwright (never a browser
Playwright downloads), against the real service on loopback.

Marked ``browser`` and ``slow``: the one-minute developer loop leaves them out, CI runs them.
Screenshots of each page go to tests/output/console/ (git-ignored).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from service_fixtures import ENTERPRISE_NET, RESIDENTIAL_NET, Service, build_service

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(__file__).resolve().parent / "output" / "console"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                       "(scripts/test.sh installs it)"),
]


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from build_service(tmp_path_factory.mktemp("console-browser"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Tab:
    """A fresh browser context (its own cookies) with the console errors it logged."""

    def __init__(self, browser: Any, svc: Service) -> None:
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.svc = svc
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def goto(self, path: str) -> Any:
        return self.page.goto(self.svc.url + path)

    def sign_in(self, tenant: str, then: str = "/") -> None:
        self.goto(f"/signin?next={quote(then, safe='')}")
        self.page.get_by_label("API key").fill(self.svc.keys[tenant])
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(re.compile(r".*/(?!signin).*"))
        assert "/signin" not in self.page.url

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def text(self) -> str:
        return str(self.page.inner_text("body"))

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any, svc: Service) -> Iterator[Tab]:
    t = Tab(browser, svc)
    yield t
    t.close()


def wait_ip_page(tab: Tab) -> None:
    tab.page.wait_for_selector("#ip-series[data-rendered]", state="attached", timeout=20_000)
    tab.page.wait_for_selector("section:has(h2:text('Recent flows')) table", timeout=20_000)


def in_net(addr: str, net: str) -> bool:
    return ipaddress.ip_address(addr) in ipaddress.ip_network(net)


def test_sign_in_see_an_ip_page_and_pivot_to_a_peer(tab: Tab) -> None:
    response = tab.goto("/ip/198.51.100.3")
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert "/signin" in tab.page.url  # no session yet
    tab.sign_in("ops", "/ip/198.51.100.3")
    assert tab.page.url.endswith("/ip/198.51.100.3")
    wait_ip_page(tab)
    assert int(tab.page.get_attribute("#ip-series", "data-rendered") or 0) > 0
    assert tab.page.locator("#ip-series canvas").count() >= 1
    body = tab.text()
    assert "first seen" in body and "2026-01-10T12:10:59" in body
    peers = tab.page.locator("section:has(h2:text('Top peers')) a.addr")
    assert peers.count() >= 3
    tab.shot("ip")
    first = peers.first.inner_text()
    peers.first.click()
    tab.page.wait_for_url(f"**/ip/{first}")
    wait_ip_page(tab)
    assert tab.page.locator("h1 .target").inner_text() == first
    assert tab.errors == []


def test_home_and_docs_load_without_errors(tab: Tab) -> None:
    tab.sign_in("ops")
    tab.page.wait_for_selector("#home-series[data-rendered]", state="attached", timeout=20_000)
    tab.page.wait_for_selector("section:has(h2:text('Top talkers by bytes')) table")
    assert "ops (admin)" in tab.text()
    tab.shot("home")
    tab.goto("/docs")
    tab.page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
    assert tab.page.locator(".opblock-summary-path:has-text('/v1/flows')").count() >= 1
    tab.shot("docs")
    assert tab.errors == []


def test_enterprise_tenant_sees_only_its_scope(tab: Tab, svc: Service) -> None:
    tab.sign_in("acme", "/ip/198.51.100.3")
    wait_ip_page(tab)
    rows = tab.page.locator("section:has(h2:text('Recent flows')) tbody tr")
    assert rows.count() > 0
    for i in range(rows.count()):
        cells = rows.nth(i).locator("a.addr").all_inner_texts()
        assert any(in_net(a, ENTERPRISE_NET) for a in cells), cells
    # Exactly what acme's key gives through the API: the same flows, no more.
    api = httpx.get(f"{svc.url}/v1/flows", params={"filter": "ip 198.51.100.3", "limit": 50},
                    headers={"X-API-Key": svc.keys["acme"]}).json()["rows"]
    shown = rows.nth(0).locator("td").all_inner_texts()
    assert shown[0] == api[0]["time_start"] and shown[1] == api[0]["src_addr"]
    assert rows.count() == len(api)
    assert "acme" in tab.page.locator("header .who").inner_text()
    tab.shot("ip-enterprise")
    assert tab.errors == []


def test_pseudonymised_addresses_stay_pseudonyms_and_are_marked(tab: Tab) -> None:
    tab.sign_in("soc", "/ip/198.51.100.3?purpose=case-7")
    wait_ip_page(tab)
    marked = tab.page.locator("a.addr.pseudonym")
    assert marked.count() > 0
    assert tab.page.locator(".mark:text('pseudonym')").count() == marked.count()
    # No clear residential address anywhere in the page: not as text, not in a link.
    residential = [a for a in re.findall(r"\d+\.\d+\.\d+\.\d+", tab.text())
                   if in_net(a, RESIDENTIAL_NET)]
    assert residential == []
    hrefs = tab.page.eval_on_selector_all("a[href^='/ip/']", "els => els.map(e => e.href)")
    assert not any("/ip/100.64." in h for h in hrefs)
    # The purpose travels with a pivot.
    assert all("purpose=case-7" in h for h in hrefs)
    tab.shot("ip-pseudonyms")
    assert tab.errors == []


XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def test_markup_from_data_is_shown_as_text_and_never_runs(tab: Tab, svc: Service) -> None:
    tab.sign_in("ops")
    tab.goto("/ip/" + quote(XSS, safe=""))
    tab.page.wait_for_selector("main .error", timeout=20_000)
    assert tab.page.locator("h1 .target").inner_text() == XSS
    assert tab.page.locator("main img, main script").count() == 0
    # A collector status from outside (its error text) on the home page: text too.
    status = svc.store / "collector-status.json"
    status.write_text(json.dumps({"state": "failed", "error": XSS, "exporters": {}}))
    try:
        tab.goto("/")
        tab.page.wait_for_selector("section:has(h2:text('Collector')) p:has-text('not running')")
        assert XSS in tab.page.locator("section:has(h2:text('Collector'))").inner_text()
        assert tab.page.locator("main img, main script").count() == 0
    finally:
        status.unlink()
    assert tab.page.evaluate("window.__xss") is None
    # And the CSP holds even against a script the page itself would add.
    tab.page.evaluate("""() => { const s = document.createElement('script');
        s.textContent = 'window.__inline = 1'; document.head.append(s); }""")
    assert tab.page.evaluate("window.__inline") is None


def test_post_without_the_csrf_token_is_refused_in_the_browser(tab: Tab) -> None:
    tab.sign_in("soc", "/?purpose=case-7")
    status = tab.page.evaluate("""async () => (await fetch('/v1/reveal?purpose=case-7', {
        method: 'POST', headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({pseudonym: '100.64.0.1'})})).status""")
    assert status == 403
    with_token = tab.page.evaluate("""async () => (await fetch('/v1/reveal?purpose=case-7', {
        method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token':
        document.querySelector('meta[name=fa-csrf]').content},
        body: JSON.stringify({pseudonym: '100.64.0.1'})})).status""")
    assert with_token != 403


def test_sign_out_ends_the_session(tab: Tab) -> None:
    tab.sign_in("ops")
    tab.page.click("#signout")
    tab.page.wait_for_url("**/signin")
    status = tab.page.evaluate("async () => (await fetch('/v1/usage')).status")
    assert status == 401
    tab.goto("/explore")
    assert "/signin?next=" in tab.page.url
    assert tab.context.cookies() == [] or all(c["name"] != "fa_session"
                                              for c in tab.context.cookies())
