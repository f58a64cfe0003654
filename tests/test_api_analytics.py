"""Investigation routes over HTTP: beacons, victims, trace and graph behind the same gate.

Planted on top of the service's random flows: two beacons (one with an endpoint in the
enterprise's prefix, one without), a C2 with peers inside, outside and in residential space,
and a relay chain origin -> relay -> target whose first leg lies outside the enterprise's scope.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pyarrow as pa
import pytest
from analytics_helpers import BASE_US
from analytics_helpers import flows as make_flows
from service_fixtures import ENTERPRISE_NET, NOW, Service, build_service, flow_table

from flowatlas.addresses import pack_many, parse_prefix
from flowatlas.ranges import in_prefixes
from flowatlas.schema import conform

ENT = parse_prefix(ENTERPRISE_NET)
OFFSET_S = NOW.timestamp() - BASE_US / 1e6  # analytics_helpers counts seconds from BASE_US

BEACON_IN = ("198.51.100.7", "203.0.113.51")
BEACON_OUT = ("203.0.113.50", "192.0.2.60")
C2 = "192.0.2.99"
C2_PEERS = {"198.51.100.9": True, "203.0.113.77": False, "100.64.5.5": False}  # in scope?
ORIGIN, RELAY, TARGET = "203.0.113.90", "192.0.2.150", "198.51.100.200"
TRACE_AT_S = -6 * 3600.0  # seconds before NOW: the middle of the relayed session


def at(seconds: np.ndarray | float) -> np.ndarray:
    return np.asarray(seconds, dtype=np.float64) + OFFSET_S


def planted() -> pa.Table:
    parts = []
    t = np.arange(-36 * 3600, -1 * 3600, 300.0)  # a check-in every 5 minutes
    for src, dst in (BEACON_IN, BEACON_OUT):
        parts.append(make_flows([src], [dst], at(t), dport=8443, bytes_=640, packets=5))
    days = np.array([-40 * 3600.0, -30 * 3600, -20 * 3600, -10 * 3600])
    for peer in C2_PEERS:
        for k in range(3):
            parts.append(make_flows([peer], [C2], at(days + 60 * k), dport=443, sport=50000 + k))
            parts.append(make_flows([C2], [peer], at(days + 60 * k + 0.5), sport=443,
                                    dport=50000 + k))
    # One relayed session cut into 1-minute records: the upstream leg starts a second earlier
    # and carries the same volume pattern (plus overhead).
    rng = np.random.default_rng(3)
    minutes = np.arange(20) * 60.0 + TRACE_AT_S - 600
    volume = rng.integers(10_000, 1_000_000, len(minutes))
    parts.append(make_flows([ORIGIN], [RELAY], at(minutes - 1), dur_s=59.0, sport=51000,
                            dport=9001, bytes_=(volume * 1.05).astype(np.int64)))
    parts.append(make_flows([RELAY], [TARGET], at(minutes), dur_s=59.0, sport=41000, dport=443,
                            bytes_=volume))
    return pa.concat_tables(parts)


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    table = conform(pa.concat_tables([flow_table(), planted().cast(flow_table().schema)]))
    yield from build_service(tmp_path_factory.mktemp("analytics"), table=table)


@pytest.fixture(scope="module")
def client(svc: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=svc.url, timeout=60) as c:
        yield c


def hdr(svc: Service, tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {svc.keys[tenant]}", "X-Purpose": "case-7"}


def in_ent(addr: str) -> bool:
    return bool(in_prefixes(pack_many([addr]), [ENT])[0])


def get(client: httpx.Client, svc: Service, tenant: str, route: str,
        params: dict[str, object]) -> dict[str, object]:
    r = client.get(route, params=params, headers=hdr(svc, tenant))  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def test_beacons_scope_and_pseudonyms(svc: Service, client: httpx.Client) -> None:
    params = {"min_score": 0.5, "n": 50}
    admin = get(client, svc, "ops", "/v1/beacons", params)["pairs"]
    pairs = {(p["src_addr"], p["dst_addr"], p["dst_port"]) for p in admin}  # type: ignore[union-attr]
    assert (*BEACON_IN, 8443) in pairs and (*BEACON_OUT, 8443) in pairs
    ent = get(client, svc, "acme", "/v1/beacons", params)["pairs"]
    assert ent, "the in-scope beacon must still be found"
    assert all(in_ent(p["src_addr"]) or in_ent(p["dst_addr"]) for p in ent)  # type: ignore[union-attr]
    assert (*BEACON_IN, 8443) in {(p["src_addr"], p["dst_addr"], p["dst_port"]) for p in ent}  # type: ignore[union-attr]


def test_victims_scope_and_pseudonyms(svc: Service, client: httpx.Client) -> None:
    admin = get(client, svc, "ops", "/v1/victims", {"c2": C2})
    assert {p["peer"] for p in admin["peers"]} == set(C2_PEERS)  # type: ignore[union-attr]
    ent = get(client, svc, "acme", "/v1/victims", {"c2": C2})
    assert {p["peer"] for p in ent["peers"]} == {a for a, inside in C2_PEERS.items() if inside}  # type: ignore[union-attr]
    soc = get(client, svc, "soc", "/v1/victims", {"c2": C2})
    peers = {p["peer"] for p in soc["peers"]}  # type: ignore[union-attr]
    assert len(peers) == 3 and "100.64.5.5" not in peers  # residential peer: a pseudonym
    assert {"198.51.100.9", "203.0.113.77"} <= peers


def test_trace_never_walks_outside_the_enterprise_scope(svc: Service, client: httpx.Client) -> None:
    when = NOW.timestamp() + TRACE_AT_S
    params = {"to": TARGET, "at": str(int(when)), "hops": 2}
    admin = get(client, svc, "ops", "/v1/trace", params)
    best = [p["addr"] for p in admin["path"] if p["alternative"] == 0]  # type: ignore[union-attr]
    assert best == [ORIGIN, RELAY, TARGET]
    ent = get(client, svc, "acme", "/v1/trace", params)
    seen = {p["addr"] for p in ent["path"]}  # type: ignore[union-attr]
    for c in ent["candidates"]:  # type: ignore[union-attr]
        seen |= {c["src_addr"], c["dst_addr"]}
        assert in_ent(c["src_addr"]) or in_ent(c["dst_addr"])
    assert ORIGIN not in seen  # the upstream leg has no endpoint in 198.51.100.0/24
    assert [p["addr"] for p in ent["path"] if p["alternative"] == 0] == [RELAY, TARGET]  # type: ignore[union-attr]


def test_analytics_routes_go_through_the_gate(svc: Service, client: httpx.Client) -> None:
    for route, params in (("/v1/beacons", {}), ("/v1/victims", {"c2": C2}),
                          ("/v1/trace", {"to": TARGET, "at": "6h"})):
        assert client.get(route, params=params).status_code == 401
        r = client.get(route, params=params, headers=hdr(svc, "watch"))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        r = client.get(route, params=params, headers={"X-API-Key": svc.keys["soc"]})
        assert r.json()["error"]["code"] == "purpose_required"
    r = client.get("/v1/trace", params={"to": TARGET, "at": "6h", "hops": 17},
                   headers=hdr(svc, "ops"))
    assert r.status_code == 403 and r.headers["X-Limit-Exceeded"] == "max_hops"
    r = client.get("/v1/victims", params={"c2": "not-an-ip"}, headers=hdr(svc, "ops"))
    assert r.json()["error"]["code"] == "bad_address"
    r = client.get("/v1/trace", params={"to": "192.0.2.250", "at": "1h"}, headers=hdr(svc, "ops"))
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_query"  # no flows there
    log = client.get("/v1/audit", params={"limit": 10000}, headers=hdr(svc, "watch")).json()
    routes = {(e["route"], e["tenant"], e["outcome"]) for e in log["entries"]}
    assert {("beacons", None, "unauthenticated"), ("victims", "watch", "denied:forbidden"),
            ("trace", "ops", "limit:max_hops"), ("victims", "ops", "error:bad_address"),
            ("trace", "ops", "error:bad_query")} <= routes


def test_a_trace_reads_the_same_from_the_cli_and_the_api(svc: Service, client: httpx.Client
                                                         ) -> None:
    # 11.6: a trace was rendered three ways (CLI table, CLI JSON, API) with different rounding.
    import json
    import subprocess
    import sys

    when = int(NOW.timestamp() + TRACE_AT_S)
    api = get(client, svc, "ops", "/v1/trace", {"to": TARGET, "at": str(when), "hops": 2})
    res = subprocess.run([sys.executable, "-m", "flowatlas.cli", "trace", "--to", TARGET, "--at",
                          str(when), "--max-hops", "2", "-o", "json", "--store", str(svc.store)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    cli = json.loads(res.stdout)
    assert set(cli) == set(api) >= {"path", "hops", "candidates", "confidence", "stopped"}
    for part in ("path", "hops", "candidates", "confidence", "stopped", "at"):
        assert cli[part] == api[part], part
    scores = [c["score"] for c in api["candidates"]]  # type: ignore[union-attr]
    assert scores and all(round(s, 4) == s for s in scores)
