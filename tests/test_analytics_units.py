"""Analytics on small hand-built stores: beacons, hubs, network classes, rank statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from analytics_helpers import flows

from flowatlas.analytics import NetClassTable, find_beacons, peer_graph
from flowatlas.analytics.frame import AnalyticsError, addr_key
from flowatlas.analytics.groups import spearman
from flowatlas.atlas import Atlas
from flowatlas.formats import readable, to_records
from flowatlas.ranges import NetClassError
from flowatlas.store import FlowStore

DAYS = 3 * 86_400


@pytest.fixture(scope="module")
def atlas(tmp_path_factory: pytest.TempPathFactory) -> Atlas:
    rng = np.random.default_rng(3)
    parts = []
    # A beacon every 300 s with jitter, unsampled; the same period sampled 1:100 (5% kept).
    t = np.arange(0, DAYS, 300.0) + rng.normal(0, 8, DAYS // 300)
    parts.append(flows(["10.0.0.1"], ["203.0.113.5"], t, bytes_=800))
    t = np.arange(0, DAYS, 60.0) + rng.normal(0, 2, DAYS // 60)
    parts.append(flows(["10.0.0.3"], ["203.0.113.9"], t[rng.random(len(t)) < 0.05], rate=100,
                       bytes_=120))
    # Decoys: random (Poisson) contact, sampled random contact, a long session cut every 30 min.
    parts.append(flows(["10.0.0.2"], ["198.51.100.7"], np.sort(rng.uniform(0, DAYS, 800)),
                       bytes_=rng.lognormal(8, 1, 800).astype(int)))
    parts.append(flows(["10.0.0.4"], ["198.51.100.9"], np.sort(rng.uniform(0, DAYS, 200)),
                       rate=100))
    parts.append(flows(["10.0.0.5"], ["198.51.100.10"], np.arange(0, DAYS, 1800.0), dur_s=1800))
    # A hub: 20 clients talk to 198.51.100.50, one of which also talks to the seed.
    clients = [f"10.1.0.{i}" for i in range(1, 21)]
    parts.append(flows(clients, ["198.51.100.50"] * 20, np.arange(20) * 10.0, dport=53, proto=17))
    parts.append(flows(["10.9.9.9"], ["198.51.100.50"], [5.0], dport=53, proto=17))
    parts.append(flows(["10.9.9.9"], ["10.8.8.8"], [7.0], dport=22))
    store = FlowStore(tmp_path_factory.mktemp("units") / "store")
    store.append(pa.concat_tables(parts))
    return Atlas(store)


def _score(report: object, src: str) -> float:
    table = readable(report.to_table())  # type: ignore[attr-defined]
    rows = [i for i, s in enumerate(table.column("src_addr").to_pylist()) if s == src]
    return float(table.column("score")[rows[0]].as_py()) if rows else 0.0


def test_beacons_separate_periodic_from_decoys(atlas: Atlas) -> None:
    report = find_beacons(atlas, Atlas.select(), top=None)
    periodic = _score(report, "10.0.0.1")
    sampled = _score(report, "10.0.0.3")
    decoys = [_score(report, s) for s in ("10.0.0.2", "10.0.0.4", "10.0.0.5")]
    assert periodic > 0.8
    assert sampled > 0.6
    assert max(decoys) < 0.4
    table = readable(report.to_table())
    i = table.column("src_addr").to_pylist().index("10.0.0.3")
    assert abs(table.column("period_s")[i].as_py() - 60) < 2


def test_graph_keeps_hub_as_leaf(atlas: Atlas) -> None:
    g = peer_graph(atlas, ["10.9.9.9"], hops=2, max_degree=5)
    nodes = {r["addr"]: r for r in to_records(g.nodes)}
    assert nodes["198.51.100.50"]["hub"] is True
    assert nodes["198.51.100.50"]["degree"] == 21
    assert "10.1.0.1" not in nodes  # the hub was not expanded
    assert nodes["10.8.8.8"]["hub"] is False
    wide = peer_graph(atlas, ["10.9.9.9"], hops=2, max_degree=100)
    assert "10.1.0.1" in {r["addr"] for r in to_records(wide.nodes)}
    assert "graphml" in g.to_graphml()


def test_graph_rejects_bad_input(atlas: Atlas) -> None:
    with pytest.raises(AnalyticsError):
        peer_graph(atlas, ["10.9.9.9"], hops=0)
    with pytest.raises(AnalyticsError, match="not an IP"):
        peer_graph(atlas, ["bogus"])


def test_netclass_most_specific_wins(tmp_path: Path) -> None:
    path = tmp_path / "classes.csv"
    path.write_text("prefix,class,asn\n10.0.0.0/8,enterprise,1\n10.1.0.0/16,cdn,2\n"
                    "2001:db8::/32,hosting,3\n")
    table = NetClassTable.load(path)
    keys = np.array([addr_key(a) for a in ("10.0.0.1", "10.1.2.3", "10.2.0.0", "11.0.0.1",
                                           "2001:db8::1")])
    assert table.lookup(keys) == ["enterprise", "cdn", "enterprise", "unknown", "hosting"]
    path.write_text("10.0.0.0/33,cdn\n")
    with pytest.raises(NetClassError, match="row 1"):
        NetClassTable.load(path)


def test_spearman_matches_definition() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman(x, x * 10) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert spearman(x, np.array([2.0, 1.0, 4.0, 3.0, 5.0])) == pytest.approx(0.8)
    assert spearman(x, np.ones(5)) == 0.0


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Atlas:
    """Three days: a seed reaches a server that is busy on the last day (30 clients) and
    quieter on the first (10 others); a one-day peer of a "C2" with a fan-out of 1200."""
    day = 86_400.0
    parts = [flows(["10.9.9.9"], ["198.51.100.60"], [10.0], dport=443)]
    first = [f"10.2.0.{i}" for i in range(1, 11)]
    last = [f"10.3.0.{i}" for i in range(1, 31)]
    parts.append(flows(first, ["198.51.100.60"] * 10, np.arange(10) * 5.0 + 100))
    parts.append(flows(last, ["198.51.100.60"] * 30, np.arange(30) * 5.0 + 2 * day + 100))
    # The "C2" 198.51.100.70: a victim checking in on three days, a wide one-day peer.
    # (The busy day must be the store's last day: that is the day the probe reads.)
    parts.append(flows(["10.4.0.1"] * 7, ["198.51.100.70"] * 7,
                       np.arange(7) * 0.3 * day + 50, dport=8443))
    parts.append(flows(["198.51.100.70"] * 7, ["10.4.0.1"] * 7, np.arange(7) * 0.3 * day + 51,
                       sport=8443, dport=40000))
    wide = [f"10.{5 + i // 250}.{i % 250}.1" for i in range(1200)]
    parts.append(flows(["10.6.6.6"] * 1200, wide, day + np.arange(1200) * 1.0, dport=80))
    parts.append(flows(["10.6.6.6"], ["198.51.100.70"], [day + 5000.0], dport=8443))
    store = FlowStore(tmp_path_factory.mktemp("busy") / "store")
    store.append(pa.concat_tables(parts))
    return Atlas(store)


def test_graph_probe_finds_busy_hub_without_reading_its_months(busy: Atlas) -> None:
    g = peer_graph(busy, ["10.9.9.9"], hops=2, max_degree=20)
    nodes = {r["addr"]: r for r in to_records(g.nodes)}
    hub = nodes["198.51.100.60"]
    assert hub["hub"] is True
    assert hub["degree"] == 30  # what the probe day alone shows: a lower bound
    assert "alone" in hub["why_leaf"]
    assert not any(a.startswith("10.2.0.") or a.startswith("10.3.0.") for a in nodes)
    # Under a higher cap the probe passes it, the whole window is read and it is expanded.
    wide = {r["addr"]: r for r in to_records(peer_graph(busy, ["10.9.9.9"], hops=2,
                                             max_degree=50).nodes)}
    assert wide["198.51.100.60"]["hub"] is False
    assert wide["198.51.100.60"]["degree"] == 41
    assert "10.2.0.1" in wide and "10.3.0.30" in wide


def test_victims_fanout_measured_on_the_one_day_only(busy: Atlas) -> None:
    from flowatlas.analytics import classify_peers

    rep = {r["peer"]: r for r in to_records(classify_peers(busy, ["198.51.100.70"]).peers)}
    assert rep["10.6.6.6"]["label"] == "scanner"
    assert rep["10.6.6.6"]["fanout"] == 1201
    assert rep["10.4.0.1"]["label"] == "victim"
    assert rep["10.4.0.1"]["fanout"] == -1  # several days: fan-out cannot change its label
