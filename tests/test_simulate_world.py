"""Statistical shape, determinism and planted scenarios of ``flowatlas simulate``."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from flowatlas.addresses import pack
from flowatlas.simulate import ScenarioConfig, SimConfig, Simulation, simulate
from flowatlas.simulate.config import ConfigError
from flowatlas.store import FlowStore

END = datetime(2026, 1, 15, tzinfo=UTC)
SMALL = ScenarioConfig(c2=2, victims=6, relays=3, max_hops=5, cover=2, enterprise=1, talkers=4)
World = tuple[pa.Table, dict[str, Any]]


def _config(**kw: Any) -> SimConfig:
    base: dict[str, Any] = dict(seed=7, flows=300_000, days=7, end=END, chunk_rows=100_000,
                                scenarios=SMALL)
    base.update(kw)
    return SimConfig(**base)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    path = tmp_path_factory.mktemp("sim") / "store"
    truth = simulate(path, _config(), truth_path=path / "ground-truth.json")
    table = pa.Table.from_batches(list(FlowStore(path).scan()))
    return table, truth.as_dict()


@pytest.fixture(scope="session")
def sampled() -> tuple[pa.Table, pa.Table]:
    full = Simulation(_config(sampling=(1,), observe_share=1.0, scenarios=ScenarioConfig.parse(
        "none")))
    thin = Simulation(_config(sampling=(100,), observe_share=1.0, scenarios=ScenarioConfig.parse(
        "none")))
    return (pa.Table.from_batches(list(full.batches())),
            pa.Table.from_batches(list(thin.batches())))


def _pair(table: pa.Table, a: str, b: str) -> pa.Table:
    return table.filter(pc.and_(pc.equal(table["src_addr"], pa.scalar(pack(a), pa.binary(16))),
                                pc.equal(table["dst_addr"], pa.scalar(pack(b), pa.binary(16)))))


def _is_v4(column: pa.ChunkedArray) -> np.ndarray:
    raw = np.frombuffer(b"".join(column.to_pylist()), dtype=np.uint8).reshape(-1, 16)
    return (raw[:, :10] == 0).all(axis=1) & (raw[:, 10] == 0xFF) & (raw[:, 11] == 0xFF)


def test_same_seed_same_truth_and_flows() -> None:
    a, b = Simulation(_config(flows=50_000)), Simulation(_config(flows=50_000))
    assert a.truth.to_json() == b.truth.to_json()
    assert a.chunk(0).equals(b.chunk(0))
    c = Simulation(_config(flows=50_000, seed=8))
    assert c.truth.to_json() != a.truth.to_json()
    assert not c.chunk(0).equals(a.chunk(0))


def test_truth_file_and_prefix_csv(world: World, tmp_path: Path) -> None:
    _, truth = world
    prefixes = truth["prefixes"]
    assert {p["class"] for p in prefixes} == {"residential", "hosting", "cdn", "enterprise"}
    assert any(":" in p["prefix"] for p in prefixes) and any("." in p["prefix"] for p in prefixes)
    sim = Simulation(_config(flows=10_000))
    j, c = sim.truth.write(tmp_path / "t.json")
    lines = c.read_text().splitlines()
    assert lines[0] == "prefix,class,asn"
    assert len(lines) == len(sim.world.prefix_rows()) + 1
    assert j.read_text() == sim.truth.to_json()


def test_heavy_tailed_sizes_and_fan_in(world: World) -> None:
    table, _ = world
    nbytes = np.sort(table["bytes"].to_numpy())[::-1].astype(np.float64)
    top = nbytes[: len(nbytes) // 100].sum() / nbytes.sum()
    assert top > 0.3, f"top 1% of flows carry only {top:.0%} of bytes"
    fan_in = pc.value_counts(table["dst_addr"]).field("counts").to_numpy()
    assert fan_in.max() > 200 * np.median(fan_in)


def test_diurnal_cycle(world: World) -> None:
    table, _ = world
    hours = (table["time_start"].cast(pa.int64()).to_numpy() // 3_600_000_000) % 24
    per_hour = np.bincount(hours, minlength=24)
    assert per_hour[19:22].mean() > 1.8 * per_hour[7:10].mean()


def test_services_scanners_and_families(world: World) -> None:
    table, _ = world
    assert {53, 123, 443, 80, 22, 25} <= set(table["dst_port"].to_numpy().tolist())
    assert pc.sum(pc.equal(table["tcp_flags"], 2)).as_py() > 0.01 * table.num_rows
    head = table.slice(0, 50_000)
    v4s, v4d = _is_v4(head["src_addr"]), _is_v4(head["dst_addr"])
    assert 0.02 < 1 - v4s.mean() < 0.4
    assert (v4s == v4d).all(), "a flow mixes IPv4 and IPv6"


def test_sampling_thins_small_flows(sampled: tuple[pa.Table, pa.Table]) -> None:
    full, thin = sampled
    assert set(thin["sampling_rate"].to_numpy().tolist()) == {100}
    assert set(full["sampling_rate"].to_numpy().tolist()) == {1}
    assert thin.num_rows < 0.2 * full.num_rows
    # Survivors are the big flows: DNS (one or two packets) mostly vanishes.
    dns_full = pc.sum(pc.equal(full["dst_port"], 53)).as_py() / full.num_rows
    dns_thin = pc.sum(pc.equal(thin["dst_port"], 53)).as_py() / thin.num_rows
    assert dns_thin < dns_full / 3
    # Packets scaled up by N estimate the true packet count.
    estimate = pc.sum(thin["packets"]).as_py() * 100
    real = pc.sum(full["packets"]).as_py()
    assert abs(estimate / real - 1) < 0.05


def test_c2_victims_operators_decoys(world: World) -> None:
    table, truth = world
    c2s = truth["scenarios"]["c2"]
    assert len(c2s) == 2
    seen = 0
    for c2 in c2s:
        assert {d["kind"] for d in c2["decoys"]} == {"scanner", "researcher", "cdn_healthcheck"}
        assert len(c2["victims"]) == 6 and c2["operators"]
        for v in c2["victims"]:
            fwd = _pair(table, v["address"], c2["address"])
            back = _pair(table, c2["address"], v["address"])
            assert fwd.num_rows + back.num_rows == v["observed_records"]
            assert v["observed_records"] in (0, v["records"])  # unsampled: all or nothing
            if fwd.num_rows:
                seen += 1
                assert set(fwd["dst_port"].to_numpy().tolist()) == {c2["port"]}
                gaps = np.diff(np.sort(fwd["time_start"].cast(pa.int64()).to_numpy())) / 1e6
                assert abs(np.median(gaps) - v["period_s"]) <= 0.3 * v["period_s"]
        for d in c2["decoys"] + c2["operators"]:
            rows = _pair(table, d["address"], c2["address"]).num_rows
            rows += _pair(table, c2["address"], d["address"]).num_rows
            assert rows == d["observed_records"]
    assert seen >= 3


def test_relay_chains_in_flows(world: World) -> None:
    table, truth = world
    chains = truth["scenarios"]["relays"]
    assert [c["hops"] for c in chains][:2] == [1, 5]
    for chain in chains:
        assert len(chain["path"]) == chain["hops"] + 2 == len(chain["legs"]) + 1
        starts = []
        for leg in chain["legs"]:
            rows = _pair(table, leg["src"], leg["dst"])
            rows = rows.filter(pc.equal(rows["src_port"], leg["src_port"]))
            back = _pair(table, leg["dst"], leg["src"])
            back = back.filter(pc.equal(back["dst_port"], leg["src_port"]))
            assert rows.num_rows + back.num_rows == leg["observed_records"]
            assert leg["observed_records"] in (0, leg["records"])
            if rows.num_rows:
                t = np.sort(rows["time_start"].cast(pa.int64()).to_numpy())
                assert np.all(np.diff(t) > 40_000_000)  # one record per 60 s slice
                starts.append(t[0])
        assert starts == sorted(starts)  # latency accumulates along the chain
        assert chain["cover"]["sessions"] == chain["hops"] * 2


def test_enterprise_hosts_reach_bad_destination(world: World) -> None:
    table, truth = world
    (ent,) = truth["scenarios"]["enterprise"]
    nets = [ipaddress.ip_network(p) for p in ent["prefixes"]]
    bad = ent["bad_destination"]
    assert len(ent["hosts"]) == 4
    for host in ent["hosts"]:
        assert any(ipaddress.ip_address(host["address"]) in n for n in nets)
        rows = _pair(table, host["address"], bad["address"]).num_rows
        rows += _pair(table, bad["address"], host["address"]).num_rows
        assert rows == host["observed_records"]


def test_bad_options_rejected() -> None:
    with pytest.raises(ConfigError):
        SimConfig(flows=-1)
    with pytest.raises(ConfigError):
        SimConfig(sampling=(0,))
    with pytest.raises(ConfigError, match="unknown name"):
        ScenarioConfig.parse("c3=1")
    assert ScenarioConfig.parse('{"c2": 1, "relays": 0}').relays == 0
    assert ScenarioConfig.parse("none").c2 == 0
