"""Issue 19.7 / 14.4: per-request limits that can never succeed as asked answer 403 naming the
limit (no Retry-After); only spent budgets answer 429. Role-appropriate hop limits, the prefix
profile route, and messages that name API parameters, not CLI flags."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from service_fixtures import ENTERPRISE_NET, Service, build_service

from flowatlas.addresses import parse_prefix, unpack
from flowatlas.ranges import in_prefixes

ENT = parse_prefix(ENTERPRISE_NET)


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from build_service(tmp_path_factory.mktemp("limits"))


@pytest.fixture(scope="module")
def client(svc: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=svc.url, timeout=60) as c:
        yield c


def hdr(svc: Service, tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {svc.keys[tenant]}", "X-Purpose": "limits"}


def limited(r: httpx.Response, quota: str) -> str:
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == "limit_exceeded" and err["quota"] == quota
    assert r.headers["X-Limit-Exceeded"] == quota
    assert "Retry-After" not in r.headers
    assert quota in err["message"] and "--" not in err["message"]  # API words, not CLI flags
    return str(err["message"])


def test_limits_that_waiting_cannot_lift_are_403(svc: Service, client: httpx.Client) -> None:
    soc = hdr(svc, "soc")
    msg = limited(client.get("/v1/flows", params={"since": "60d"}, headers=soc),
                  "max_window_days")
    assert "since" in msg and "until" in msg
    limited(client.get("/v1/flows", params={"filter": "net 198.51.0.0/16"}, headers=soc),
            "widest_prefix")
    limited(client.get("/v1/ip/198.51.0.0/16", headers=soc), "widest_prefix")
    limited(client.get("/v1/audit", params={"limit": 20_000}, headers=hdr(svc, "watch")),
            "rows_per_response")
    limited(client.get("/v1/graph", params={"seed": "198.51.100.1", "hops": 3}, headers=soc),
            "max_hops")
    log = client.get("/v1/audit", params={"limit": 10_000}, headers=hdr(svc, "watch")).json()
    outcomes = {(e["tenant"], e["outcome"]) for e in log["entries"]}
    assert {("soc", "limit:max_window_days"), ("soc", "limit:widest_prefix"),
            ("watch", "limit:rows_per_response"), ("soc", "limit:max_hops")} <= outcomes


def test_hop_limits_follow_the_role(svc: Service, client: httpx.Client) -> None:
    t = svc.table
    row = int(np.flatnonzero(in_prefixes(t.column("dst_addr"), [ENT]))[0])
    target = unpack(t.column("dst_addr")[row].as_py())
    at = str(int(t.column("time_start")[row].as_py().timestamp()))
    ops = hdr(svc, "ops")
    r = client.get("/v1/trace", params={"to": target, "at": at, "hops": 16}, headers=ops)
    assert r.status_code == 200, r.text  # an operator may follow a 16-hop chain
    msg = limited(client.get("/v1/trace", params={"to": target, "at": at, "hops": 17},
                             headers=ops), "max_hops")
    assert "17 hops" in msg and "16" in msg
    limited(client.get("/v1/trace", params={"to": target, "at": at, "hops": 3},
                       headers=hdr(svc, "soc")), "max_hops")
    assert client.get("/v1/usage", headers=ops).json()["quotas"]["max_hops"] == 16


def test_prefix_profile(svc: Service, client: httpx.Client) -> None:
    t = svc.table
    touching = in_prefixes(t.column("src_addr"), [ENT]) | in_prefixes(t.column("dst_addr"), [ENT])
    r = client.get(f"/v1/ip/{ENTERPRISE_NET}", headers=hdr(svc, "ops"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["address"] == ENTERPRISE_NET and body["seen"]
    # Each flow touching the prefix once: out when it starts inside, in otherwise.
    src = in_prefixes(t.column("src_addr"), [ENT])
    totals = {x["direction"]: x["flows"] for x in body["totals"]}
    assert totals == {"out": int(src.sum()), "in": int((touching & ~src).sum())}
    peers = client.get(f"/v1/ip/{ENTERPRISE_NET}/peers", headers=hdr(svc, "ops"))
    assert peers.status_code == 200 and peers.json()["rows"]
    assert client.get("/v1/ip/198.51.100.0/33", headers=hdr(svc, "ops")).status_code == 400
