"""nfdump/SiLK statistics: -s FIELD/ORDER parsing, prefix roll-up, shares and the running share,
rates, distinct counts, -A and address sets, each checked against a plain Python count."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from flowfactory import random_flows

from flowatlas.addresses import unpack
from flowatlas.atlas import Atlas
from flowatlas.query.model import QueryError, StatSpec, parse_stat
from flowatlas.store import FlowStore


@pytest.mark.parametrize(("spec", "want"), [
    ("ip", StatSpec(("ip",))),
    ("ip/bytes", StatSpec(("ip",), "bytes")),
    ("dstport/packets", StatSpec(("dst_port",), "packets")),
    ("srcip,dstport", StatSpec(("src_addr", "dst_port"))),
    ("ip/24", StatSpec(("ip",), None, (("ip", 24, 24),))),
    ("ip/48", StatSpec(("ip",), None, (("ip", 32, 48),))),
    ("ip/24/48/bytes", StatSpec(("ip",), "bytes", (("ip", 24, 48),))),
    ("srcip/16,dstport/tstart", StatSpec(("src_addr", "dst_port"), "first", (("src_addr", 16, 16),))),
])
def test_parse_stat(spec: str, want: StatSpec) -> None:
    assert parse_stat(spec) == want


@pytest.mark.parametrize(("spec", "message"), [
    ("", "names no field"),
    ("colour/bytes", "unknown field 'colour'"),
    ("dstport/24", "a prefix length needs an address field"),
    ("ip/bytes/24", "cannot read '24'"),
    ("ip/24/48/64", "cannot read '64'"),
    ("ip/33/129", "prefix lengths are 0-32 for IPv4"),
    ("srcip/bytes,dstport", "cannot read 'bytes'"),
])
def test_parse_stat_errors(spec: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_stat(spec)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stats")
    s = FlowStore(path)
    s.append(random_flows(4_000, seed=9, days=1))
    s.compact()
    return path


def rows() -> list[dict[str, Any]]:
    return [dict(r, src=unpack(r["src_addr"]), dst=unpack(r["dst_addr"]))
            for r in random_flows(4_000, seed=9, days=1).to_pylist()]


def net(addr: str, v4: int, v6: int) -> str:
    ip = ipaddress.ip_address(addr)
    return str(ipaddress.ip_network(f"{addr}/{v4 if ip.version == 4 else v6}", strict=False))


def test_prefix_rollup_counts_both_endpoints(store: Path) -> None:
    want: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows():
        for addr in (r["src"], r["dst"]):
            want[net(addr, 24, 48)][0] += 1
            want[net(addr, 24, 48)][1] += r["bytes"]
    with Atlas(store) as atlas:
        t = atlas.top(atlas.select(None), by="ip/24/48/bytes", n=100_000)
    got = {r["ip"]: [r["flows"], r["bytes"]] for r in t.to_pylist()}
    assert got == dict(want)
    assert t["bytes"].to_pylist() == sorted(t["bytes"].to_pylist(), reverse=True)
    assert any(":" in k for k in got) and any("." in k for k in got)


def test_shares_running_share_and_distinct(store: Path) -> None:
    data = rows()
    per_src: dict[str, dict[str, Any]] = {}
    for r in data:
        g = per_src.setdefault(r["src"], {"flows": 0, "packets": 0, "dsts": set(), "ports": set()})
        g["flows"] += 1
        g["packets"] += r["packets"]
        g["dsts"].add(r["dst"])
        g["ports"].add(r["dst_port"])
    total_packets = sum(r["packets"] for r in data)
    with Atlas(store) as atlas:
        t = atlas.top(atlas.select(None), by="srcip/packets", n=5, shares=True,
                      distinct=("dst_addr", "dstport"))
    out = t.to_pylist()
    running = 0.0
    for r in out:
        g = per_src[unpack(r["src_addr"])]
        assert (r["flows"], r["packets"]) == (g["flows"], g["packets"])
        assert r["flows_pct"] == pytest.approx(100 * g["flows"] / len(data))
        running += 100 * g["packets"] / total_packets
        assert r["cumul_pct"] == pytest.approx(running)
        assert (r["distinct_dst_addr"], r["distinct_dst_port"]) == (len(g["dsts"]), len(g["ports"]))
    assert len(out) == 5 and out[0]["packets"] == max(g["packets"] for g in per_src.values())


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowatlas.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_ipset_saved_and_used(store: Path, tmp_path: Path) -> None:
    ipset = tmp_path / "heavy.set"
    res = run("top", "--store", str(store), "-s", "srcip/24/48/bytes", "-n", "3",
              "--ipset-out", str(ipset), "--format", "json")
    assert res.returncode == 0, res.stderr
    nets = [r["src_addr"] for r in json.loads(res.stdout)]
    assert ipset.read_text().splitlines() == nets
    res = run("query", "--store", str(store), f"src ipset {ipset}", "-n", "100000",
              "--format", "json")
    assert res.returncode == 0, res.stderr
    got = sorted((r["time_start"], r["src_addr"]) for r in json.loads(res.stdout))
    members = [ipaddress.ip_network(n) for n in nets]
    want = [r for r in rows() if any(ipaddress.ip_address(r["src"]) in m for m in members)]
    assert len(got) == len(want) > 0
    res = run("query", "--store", str(store), f"ipset {tmp_path / 'missing.set'}")
    assert res.returncode == 2 and "cannot read ipset" in res.stderr and "^" in res.stderr
    res = run("top", "--store", str(store), "-s", "dstport", "--ipset-out", str(ipset))
    assert res.returncode == 2 and "needs a statistic with one address field" in res.stderr


def test_aggregate_records_and_several_statistics(store: Path) -> None:
    res = run("query", "--store", str(store), "-A", "srcip,dstport", "-O", "bytes", "-n", "5",
              "--format", "json")
    assert res.returncode == 0, res.stderr
    agg = json.loads(res.stdout)
    want: dict[tuple[str, int], int] = defaultdict(int)
    for r in rows():
        want[(r["src"], r["dst_port"])] += r["bytes"]
    top5 = sorted(want.values(), reverse=True)[:5]
    assert [r["bytes"] for r in agg] == top5 and {"bps", "pps", "bpp"} <= set(agg[0])
    res = run("top", "--store", str(store), "-s", "ip", "-s", "proto", "--format", "csv")
    assert res.returncode == 2 and "several -s need" in res.stderr
    res = run("top", "--store", str(store), "-s", "ip/bytes", "-s", "proto/packets",
              "--format", "ndjson")
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert {x["statistic"] for x in lines} == {"ip/bytes", "proto/packets"}


def test_large_ipset_binds_one_list_and_matches(store: Path, tmp_path: Path) -> None:
    """Past 64 entries addresses and prefixes go in as list parameters: same answer."""
    data = rows()
    hosts = sorted({r["src"] for r in data})[:150] + ["10.255.255.254"] * 3
    nets = sorted({net(r["dst"], 24, 64) for r in data})[:100]
    ipset = tmp_path / "big.set"
    ipset.write_text("\n".join(hosts + nets) + "\n")
    members = [ipaddress.ip_network(n) for n in nets]
    want = sorted((r["time_start"], r["src"], r["dst"]) for r in data
                  if r["src"] in hosts or r["dst"] in hosts
                  or any(ipaddress.ip_address(a) in m for m in members for a in (r["src"], r["dst"])))
    from flowatlas.engines.sql import SqlDialect, Statement
    from flowatlas.query.filter import parse_filter

    expr = parse_filter(f"ipset {ipset}", read_files=True)
    st = Statement()
    assert "unnest" in SqlDialect().compile(expr, st) and len(st.params) == 3
    with Atlas(store) as atlas:
        t = atlas.flows(atlas.select(expr), limit=100_000)
    got = sorted((a, unpack(s), unpack(d)) for a, s, d in zip(
        t["time_start"].to_pylist(), t["src_addr"].to_pylist(), t["dst_addr"].to_pylist(),
        strict=True))
    assert got == want and 0 < len(want) < len(data)
