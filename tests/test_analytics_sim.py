"""Investigations against small simulated worlds: each finds its planted truth, rejects decoys."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowatlas.analytics import NetClassTable, classify_peers, find_beacons, peer_graph, trace
from flowatlas.analytics.frame import AnalyticsError
from flowatlas.atlas import Atlas
from flowatlas.formats import readable
from flowatlas.simulate import ScenarioConfig, SimConfig, simulate

END = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Atlas, dict[str, Any], Path]:
    d = tmp_path_factory.mktemp("analytics_world")
    cfg = SimConfig(seed=7, flows=150_000, days=10, end=END, observe_share=1.0,
                    scenarios=ScenarioConfig(c2=2, victims=8, relays=4, max_hops=8))
    simulate(d / "store", cfg, truth_path=d / "truth.json")
    truth = json.loads((d / "truth.json").read_text())
    return Atlas(d / "store"), truth, d / "truth.prefixes.csv"


def test_victims_found_and_decoys_rejected(world: tuple[Atlas, dict[str, Any], Path]) -> None:
    atlas, truth, prefixes = world
    nc = NetClassTable.load(prefixes)
    c2s = truth["scenarios"]["c2"]
    report = classify_peers(atlas, [c["address"] for c in c2s], netclass=nc)
    labels = dict(zip(readable(report.peers).column("peer").to_pylist(),
                      report.peers.column("label").to_pylist(), strict=True))
    for c in c2s:
        for v in c["victims"]:
            if v["observed_records"]:
                assert labels[v["address"]] == "victim", v
        for o in c["operators"]:
            if o["observed_records"]:
                assert labels[o["address"]] == "operator", o
        for dec in c["decoys"]:
            if dec["observed_records"]:
                assert labels[dec["address"]] != "victim", dec
    assert "why" in report.to_table().column_names


def test_victims_table_keeps_addresses_whole(world: tuple[Atlas, dict[str, Any], Path]) -> None:
    """The terminal table shows every peer and label in full; long explanations wrap."""
    from click.testing import CliRunner

    from flowatlas.cli.main import cli

    atlas, truth, prefixes = world
    c2 = truth["scenarios"]["c2"][0]
    res = CliRunner().invoke(cli, ["victims", c2["address"], "--store", str(atlas.store.root),
                                    "--netclass", str(prefixes)])
    assert res.exit_code == 0, res.output
    seen = [v["address"] for v in c2["victims"] if v["observed_records"]]
    assert seen and all(f" {a} " in res.output for a in seen)
    assert " victim " in res.output and "…" not in res.output.split("why")[0]


def test_beacons_rank_victims_above_others(world: tuple[Atlas, dict[str, Any], Path]) -> None:
    atlas, truth, _ = world
    report = find_beacons(atlas, Atlas.select(), top=None)
    pairs = readable(report.to_table())
    victims = {(v["address"], c["address"]) for c in truth["scenarios"]["c2"]
               for v in c["victims"]}
    # CDN health checks of the C2 are periodic by construction: neither victims nor negatives.
    periodic = {(d["address"], c["address"]) for c in truth["scenarios"]["c2"]
                for d in c["decoys"] if d["kind"] == "cdn_healthcheck"}
    keys = list(zip(pairs.column("src_addr").to_pylist(), pairs.column("dst_addr").to_pylist(),
                    strict=True))
    scores = pairs.column("score").to_pylist()
    pos = [s for k, s in zip(keys, scores, strict=True) if k in victims]
    neg = sorted((s for k, s in zip(keys, scores, strict=True)
                  if k not in victims and k not in periodic), reverse=True)
    # Positives are required: a world without planted beacons, or a report that misses them
    # all, fails here instead of passing vacuously.
    assert victims and pos, (len(victims), len(pos))
    assert len(pos) >= len(victims) // 2
    # Most planted beacons outrank all but a handful of background pairs.
    top_neg = neg[min(5, len(neg) - 1)] if neg else 0.0
    assert sum(s > top_neg for s in pos) >= 0.8 * len(pos)


def test_trace_follows_planted_chains(world: tuple[Atlas, dict[str, Any], Path]) -> None:
    atlas, truth, _ = world
    for chain in truth["scenarios"]["relays"]:
        at = datetime.fromisoformat(chain["session_start"].replace("Z", "+00:00"))
        report = trace(atlas, chain["path"][-1], at + timedelta(seconds=90))
        assert report.path == chain["path"], (chain["hops"], report.stopped)
        assert report.confidence > 0.5
        assert report.stopped


def test_graph_reaches_victims_and_keeps_hubs_as_leaves(
        world: tuple[Atlas, dict[str, Any], Path]) -> None:
    atlas, truth, _ = world
    c2 = truth["scenarios"]["c2"][0]
    g = peer_graph(atlas, [c2["address"]], hops=2, max_degree=3)
    nodes = dict(zip(readable(g.nodes).column("addr").to_pylist(), g.nodes.column("hop").to_pylist(),
                     strict=True))
    for v in c2["victims"]:
        assert nodes.get(v["address"]) == 1
    graphml = g.to_graphml()
    assert graphml.count("<edge ") == g.edges.num_rows


def test_errors_are_clear(world: tuple[Atlas, dict[str, Any], Path]) -> None:
    atlas, _, _ = world
    with pytest.raises(AnalyticsError, match="not an IP address"):
        classify_peers(atlas, ["not-an-ip"])
    with pytest.raises(AnalyticsError, match="no flows reach"):
        trace(atlas, "192.0.2.77", END - timedelta(days=1))
