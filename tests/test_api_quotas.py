"""Quotas over real HTTP: each budget triggers (429, named, Retry-After, usage headers) and resets,
each per-request limit answers 403 naming it;
concurrent requests cannot spend past a limit; state survives a restart."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from service_fixtures import Service, build_service

from flowatlas.governance.controlplane import ControlPlane
from flowatlas.governance.keys import KeyRing
from flowatlas.governance.quotas import QuotaLedger
from flowatlas.governance.tenants import TenantRegistry

FAST = {"requests_per_second": 1000, "burst": 1000}
QUOTAS = {
    "soc": {
        **FAST,
        "lookups_per_day": 3,
        "rows_per_day": 50,
        "rows_per_response": 30,
        "max_window_days": 7,
        "max_hops": 1,
    },
    "acme": {"requests_per_second": 1, "burst": 3},
    "other": {**FAST, "rows_per_day": 1000, "lookups_per_day": 5},
    "ops": {**FAST, "lookups_per_day": 3},
}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from build_service(tmp_path_factory.mktemp("quota"), QUOTAS)


@pytest.fixture(scope="module")
def client(svc: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=svc.url, timeout=30) as c:
        yield c


def hdr(svc: Service, tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {svc.keys[tenant]}", "X-Purpose": "quota-test"}


def refused(r: httpx.Response, quota: str) -> None:
    assert r.status_code == 429, r.text
    body = r.json()["error"]
    assert body["code"] == "quota_exceeded" and body["quota"] == quota
    assert r.headers["X-Quota-Exceeded"] == quota
    assert int(r.headers["Retry-After"]) >= 1
    assert "X-Quota-Reset" in r.headers


def limited(r: httpx.Response, quota: str) -> None:
    """A per-request limit: waiting never helps, so 403 and no Retry-After (issue 14.4)."""
    assert r.status_code == 403, r.text
    body = r.json()["error"]
    assert body["code"] == "limit_exceeded" and body["quota"] == quota
    assert r.headers["X-Limit-Exceeded"] == quota and "Retry-After" not in r.headers


def next_day(svc: Service) -> None:
    svc.clock.advance(86_400)


def test_static_limits(svc: Service, client: httpx.Client) -> None:
    h = hdr(svc, "soc")
    limited(client.get("/v1/flows", params={"limit": 31}, headers=h), "rows_per_response")
    limited(
        client.get("/v1/flows", params={"since": "30d", "limit": 1}, headers=h), "max_window_days"
    )
    limited(
        client.get("/v1/flows", params={"filter": "net 198.51.0.0/16", "limit": 1}, headers=h),
        "widest_prefix",
    )
    limited(
        client.get(
            "/v1/graph", params={"seed": "198.51.100.1", "hops": 2, "max_nodes": 10}, headers=h
        ),
        "max_hops",
    )
    # Narrowed, each passes.
    assert client.get("/v1/flows", params={"limit": 1, "since": "6d"}, headers=h).status_code == 200
    assert (
        client.get(
            "/v1/flows", params={"filter": "net 198.51.100.0/24", "limit": 1}, headers=h
        ).status_code
        == 200
    )


def test_daily_rows_and_lookups_trigger_and_reset(svc: Service, client: httpx.Client) -> None:
    next_day(svc)
    h = hdr(svc, "soc")
    usage = client.get("/v1/usage", headers=h).json()
    assert usage["used"] == {"lookups": 0, "rows": 0}
    for _ in range(2):
        r = client.get("/v1/flows", params={"limit": 25}, headers=h)
        assert r.status_code == 200 and r.json()["count"] == 25
    assert int(r.headers["X-Quota-Remaining-Rows-Per-Day"]) == 0
    refused(client.get("/v1/flows", params={"limit": 1}, headers=h), "rows_per_day")
    assert client.get("/v1/usage", headers=h).json()["remaining"]["rows_per_day"] == 0
    next_day(svc)
    assert client.get("/v1/flows", params={"limit": 1}, headers=h).status_code == 200
    # Lookups: three distinct addresses a day; repeating one costs nothing new.
    h = hdr(svc, "ops")
    for host in ("198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.1"):
        r = client.get(f"/v1/ip/{host}", params={"n": 1}, headers=h)
        assert r.status_code == 200, r.text
    refused(client.get("/v1/ip/198.51.100.9", params={"n": 1}, headers=h), "lookups_per_day")
    refused(
        client.get("/v1/flows", params={"filter": "host 198.51.100.9", "limit": 1}, headers=h),
        "lookups_per_day",
    )
    assert client.get("/v1/usage", headers=h).json()["remaining"]["lookups_per_day"] == 0
    next_day(svc)
    assert client.get("/v1/ip/198.51.100.9", params={"n": 1}, headers=h).status_code == 200


def test_unused_reservation_is_refunded(svc: Service, client: httpx.Client) -> None:
    next_day(svc)
    h = hdr(svc, "soc")
    r = client.get("/v1/flows", params={"filter": "host 192.0.2.250", "limit": 30}, headers=h)
    assert r.status_code == 200 and r.json()["count"] == 0
    assert client.get("/v1/usage", headers=h).json()["used"]["rows"] == 0


def test_token_bucket_triggers_and_refills(svc: Service, client: httpx.Client) -> None:
    h = hdr(svc, "acme")
    codes = [client.get("/v1/usage", headers=h).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    r = client.get("/v1/flows", params={"limit": 1}, headers=h)
    refused(r, "requests_per_second")
    svc.clock.advance(int(r.headers["Retry-After"]))
    assert client.get("/v1/flows", params={"limit": 1}, headers=h).status_code == 200


def test_concurrent_requests_cannot_exceed_rows(svc: Service, client: httpx.Client) -> None:
    next_day(svc)
    h = hdr(svc, "other")

    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=svc.url, timeout=60) as c:
            return c.get("/v1/flows", params={"limit": 100}, headers=h)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(32)))
    ok = [r for r in results if r.status_code == 200]
    assert all(r.status_code == 429 for r in results if r.status_code != 200)
    assert sum(r.json()["count"] for r in ok) <= 1000
    assert len(ok) == 10  # every answer holds 100 rows: exactly ten fit in the day
    assert client.get("/v1/usage", headers=h).json()["used"]["rows"] == 1000


def test_concurrent_lookups_cannot_exceed_quota(svc: Service) -> None:
    next_day(svc)
    h = hdr(svc, "other")

    def one(i: int) -> int:
        with httpx.Client(base_url=svc.url, timeout=60) as c:
            return c.get(f"/v1/ip/198.51.100.{i + 1}", params={"n": 1}, headers=h).status_code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(one, range(20)))
    assert codes.count(200) == 5 and codes.count(429) == 15


def test_ledger_is_atomic_across_processes_style_connections(svc: Service) -> None:
    """Two control-plane handles on one file (as two processes would have) share the limit."""
    a = ControlPlane.for_store(svc.store)
    b = ControlPlane.for_store(svc.store)
    try:
        tenant = TenantRegistry(a).add("twin", "admin", quotas={**FAST, "rows_per_day": 10})
        from flowatlas.governance.quotas import Demand, QuotaExceeded

        la, lb = QuotaLedger(a, svc.clock), QuotaLedger(b, svc.clock)

        def spend(ledger: QuotaLedger) -> bool:
            try:
                ledger.spend(tenant, Demand(rows=1))
                return True
            except QuotaExceeded:
                return False

        with ThreadPoolExecutor(8) as pool:
            done = list(pool.map(lambda i: spend(la if i % 2 else lb), range(40)))
        assert done.count(True) == 10
    finally:
        a.close()
        b.close()


def test_control_plane_survives_restart(svc: Service) -> None:
    """Everything lives in control.sqlite: a new handle (a restarted server) sees it all."""
    again = ControlPlane.for_store(svc.store)
    try:
        names = {t.name for t in TenantRegistry(again).list()}
        assert {"ops", "soc", "acme", "watch", "other"} <= names
        tenant, _ = KeyRing(again).authenticate(svc.keys["soc"])
        assert tenant.name == "soc" and tenant.quotas.rows_per_day == 50
        used = QuotaLedger(again, svc.clock).usage(TenantRegistry(again).get("other"))
        assert used.lookups == 5
    finally:
        again.close()
