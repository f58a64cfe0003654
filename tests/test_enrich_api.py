"""Enrichment through the HTTP API: identity fields, the data's source and date, and no
identity for a pseudonymised address (its AS and country would say where it lives)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import httpx
import numpy as np
import pyarrow as pa
import pytest
from service_fixtures import Service, build_service, flow_table

from flowatlas.addresses import pack_many
from flowatlas.enrich import enricher
from flowatlas.governance.classes import PrefixClasses

HIDDEN = "8.8.8.8"  # classed residential below: pseudonymised for analysts
CLEAR = "1.1.1.1"
HOST = "198.51.100.4"


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    base = flow_table(400, seed=3)
    n = base.num_rows
    rng = np.random.default_rng(3)
    far = rng.choice([HIDDEN, CLEAR], n)
    out = rng.random(n) < 0.5
    src = np.where(out, HOST, far)
    dst = np.where(out, far, HOST)
    # The exporter supplied the AS numbers (as ingest would have filled them).
    asn = {HIDDEN: 15169, CLEAR: 13335, HOST: 0}
    table = base.set_column(base.schema.get_field_index("src_addr"), "src_addr",
                            pack_many(src.tolist()))
    table = table.set_column(table.schema.get_field_index("dst_addr"), "dst_addr",
                             pack_many(dst.tolist()))
    for name, col in (("src_as", src), ("dst_as", dst)):
        table = table.set_column(table.schema.get_field_index(name), name,
                                 pa.array([asn[a] for a in col.tolist()], pa.uint32()))
    for s in build_service(tmp_path_factory.mktemp("enrich-svc"), table=table):
        PrefixClasses(s.control).set("8.8.8.0/24", "residential")  # before the first request
        yield s


@pytest.fixture(scope="module")
def client(svc: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=svc.url, timeout=30) as c:
        yield c


def hdr(svc: Service, tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {svc.keys[tenant]}", "X-Purpose": "case-12"}


def flows(client: httpx.Client, svc: Service, tenant: str, **params: object) -> dict[str, object]:
    r = client.get("/v1/flows", params={"filter": f"host {HOST}", "limit": 1000, **params},
                   headers=hdr(svc, tenant))
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def test_answers_carry_identity_and_the_data_source(svc: Service, client: httpx.Client) -> None:
    body = flows(client, svc, "ops")
    info = enricher().datasets[0].info
    assert body["enrichment"] == {"source": info.source, "version": info.version,
                                  "date": info.date}
    rows = body["rows"]
    assert isinstance(rows, list)
    far = [(r["dst_addr"], r["dst_asn"], r["dst_as_name"]) for r in rows if r["src_addr"] == HOST]
    assert set(far) == {(HIDDEN, 15169, "Google LLC"), (CLEAR, 13335, "Cloudflare, Inc.")}
    assert {r["src_asn"] for r in rows if r["src_addr"] == HOST} == {None}  # TEST-NET-2


def test_a_pseudonymised_address_shows_no_identity(svc: Service, client: httpx.Client) -> None:
    admin = flows(client, svc, "ops")["rows"]
    soc = flows(client, svc, "soc")["rows"]
    assert isinstance(admin, list) and isinstance(soc, list) and len(admin) == len(soc)
    hidden = 0
    for a, s in zip(admin, soc, strict=True):
        for side in ("src", "dst"):
            if a[f"{side}_addr"] == HIDDEN:
                hidden += 1
                assert s[f"{side}_addr_pseudonymised"] is True
                assert (s[f"{side}_asn"], s[f"{side}_as_name"], s[f"{side}_country"]) == \
                    (None, None, None)
                assert s[f"{side}_as"] == 0  # the exporter's AS number is hidden too
            elif a[f"{side}_addr"] == CLEAR:
                assert (s[f"{side}_asn"], s[f"{side}_as"]) == (13335, 13335)
    assert hidden > 50
    # The same in a streamed export: neither the AS nor its name appears anywhere.
    r = client.get("/v1/flows", params={"filter": f"host {HOST}", "limit": 1000, "format": "csv"},
                   headers=hdr(svc, "soc"))
    assert r.status_code == 200
    assert r.headers["x-flowatlas-enrichment"].startswith("ip-location-db ")
    text = r.text
    assert "Google" not in text and "15169" not in text and "Cloudflare" in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(soc)


def test_aggregates_profile_and_graph_hide_it_too(svc: Service, client: httpx.Client) -> None:
    top = client.get("/v1/top", params={"by": "ip", "n": 10}, headers=hdr(svc, "soc")).json()
    assert "Google" not in str(top) and 15169 not in [r.get("ip_asn") for r in top["rows"]]
    assert 13335 in [r.get("ip_asn") for r in top["rows"]]
    prof = client.get(f"/v1/ip/{HOST}", headers=hdr(svc, "soc")).json()
    assert prof["identity"] == {"asn": None, "as_name": None, "country": None}
    assert prof["enrichment"]["source"] == "ip-location-db"
    assert {p["peer_asn"] for p in prof["peers"]} == {None, 13335}
    assert "Google" not in str(prof)
    clear = client.get(f"/v1/ip/{CLEAR}", headers=hdr(svc, "soc")).json()
    assert clear["identity"]["asn"] == 13335
    # A profile asked by its pseudonym names no identity (the gate translated the target).
    pseudo = next(p["peer"] for p in prof["peers"] if p["peer_asn"] is None)
    hidden = client.get(f"/v1/ip/{pseudo}", headers=hdr(svc, "soc")).json()
    assert hidden["identity"] is None and "Google" not in str(hidden)
    graph = client.get("/v1/graph", params={"seed": HOST}, headers=hdr(svc, "soc")).json()
    assert "Google" not in str(graph) and "15169" not in str(graph)
    assert {n["addr_asn"] for n in graph["nodes"]} == {None, 13335}
    admin = client.get(f"/v1/ip/{HIDDEN}", headers=hdr(svc, "ops")).json()
    assert admin["identity"]["as_name"] == "Google LLC"  # the operator sees it
