"""Address lookups, windows and aggregates through the engine, checked against Arrow compute."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from flowfactory import BASE, random_flows, row_keys

from flowatlas.addresses import pack, parse_prefix, unpack
from flowatlas.atlas import Atlas
from flowatlas.query.window import Window
from flowatlas.store import FlowStore

N = 60_000


@pytest.fixture(scope="module")
def truth() -> pa.Table:
    return random_flows(N, seed=7)


@pytest.fixture(scope="module", params=["ingest", "compacted", "mixed"])
def atlas(request: pytest.FixtureRequest, truth: pa.Table,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Atlas]:
    """The same rows stored three ways: fresh files only, compacted runs only, and both."""
    store = FlowStore(tmp_path_factory.mktemp(request.param))
    if request.param == "mixed":
        store.append(truth.slice(0, N // 2))
        store.compact()
        store.append(truth.slice(N // 2))
    else:
        for start in range(0, N, 20_000):
            store.append(truth.slice(start, 20_000))
        if request.param == "compacted":
            store.compact()
    with Atlas(store) as a:
        yield a


def _addresses(truth: pa.Table) -> list[str]:
    """A heavy host, a light one, and one IPv6 host."""
    counts = pc.value_counts(truth.column("src_addr")).to_pylist()
    counts.sort(key=lambda c: -c["counts"])
    v6 = next(c["values"] for c in counts if not c["values"].startswith(bytes(10) + b"\xff\xff"))
    return [unpack(counts[0]["values"]), unpack(counts[-1]["values"]), unpack(v6)]


def _expected(truth: pa.Table, direction: str, low: bytes, high: bytes) -> pa.Table:
    def inside(col: str) -> pa.ChunkedArray:
        c = truth.column(col)
        return pc.and_(pc.greater_equal(c, pa.scalar(low, pa.binary(16))),
                       pc.less_equal(c, pa.scalar(high, pa.binary(16))))

    mask = {"src": inside("src_addr"), "dst": inside("dst_addr")}.get(direction)
    if mask is None:
        mask = pc.or_(inside("src_addr"), inside("dst_addr"))
    return truth.filter(mask)


@pytest.mark.parametrize("direction", ["src", "dst", "any"])
def test_address_lookups_return_exactly_the_matching_flows(atlas: Atlas, truth: pa.Table,
                                                           direction: str) -> None:
    for address in _addresses(truth):
        word = "ip" if direction == "any" else f"{direction} ip"
        got = atlas.flows(atlas.select(f"{word} {address}"), limit=N)
        want = _expected(truth, direction, pack(address), pack(address))
        assert want.num_rows > 0
        assert row_keys(got) == row_keys(want), (direction, address)


@pytest.mark.slow
def test_prefix_lookup_ipv4_and_ipv6(atlas: Atlas, truth: pa.Table) -> None:
    for text in ("10.0.0.0/9", "2001:db8::/32"):
        p = parse_prefix(text)
        got = atlas.flows(atlas.select(f"net {text}"), limit=N)
        want = _expected(truth, "any", p.low, p.high)
        assert 0 < want.num_rows < N
        assert row_keys(got) == row_keys(want)


def test_flows_are_newest_first_and_limited(atlas: Atlas) -> None:
    got = atlas.flows(atlas.select("proto tcp"), limit=50)
    starts = got.column("time_start").to_pylist()
    assert len(starts) == 50
    assert starts == sorted(starts, reverse=True)


def test_time_window_is_half_open_on_time_start(atlas: Atlas, truth: pa.Table) -> None:
    since, until = BASE + timedelta(hours=30), BASE + timedelta(hours=50)
    sel = atlas.select("port 443", Window(since, until))
    got = atlas.flows(sel, limit=N)
    ts = truth.column("time_start")
    mask = pc.and_(pc.and_(pc.greater_equal(ts, pa.scalar(since)), pc.less(ts, pa.scalar(until))),
                   pc.or_(pc.equal(truth.column("src_port"), 443),
                          pc.equal(truth.column("dst_port"), 443)))
    assert row_keys(got) == row_keys(truth.filter(mask))


def test_top_ip_counts_both_endpoints_like_nfdump(atlas: Atlas, truth: pa.Table) -> None:
    got = atlas.top(atlas.select(), by="ip", order="bytes", n=5)
    src = truth.group_by("src_addr").aggregate([("bytes", "sum"), ("bytes", "count")])
    dst = truth.group_by("dst_addr").aggregate([("bytes", "sum"), ("bytes", "count")])
    totals: dict[bytes, list[int]] = {}
    for t, col in ((src, "src_addr"), (dst, "dst_addr")):
        for addr, b, c in zip(t.column(col).to_pylist(), t.column("bytes_sum").to_pylist(),
                              t.column("bytes_count").to_pylist(), strict=True):
            totals.setdefault(addr, [0, 0])
            totals[addr][0] += b
            totals[addr][1] += c
    best = sorted(totals.items(), key=lambda kv: -kv[1][0])[:5]
    assert got.column("ip").to_pylist() == [k for k, _ in best]
    assert got.column("bytes").to_pylist() == [v[0] for _, v in best]
    assert got.column("flows").to_pylist() == [v[1] for _, v in best]


def test_estimates_scale_by_sampling_rate(atlas: Atlas, truth: pa.Table) -> None:
    raw = atlas.top(atlas.select("proto udp"), by="proto")
    est = atlas.top(atlas.select("proto udp"), by="proto", estimate=True)
    udp = truth.filter(pc.equal(truth.column("protocol"), 17))
    assert raw.column("bytes")[0].as_py() == pc.sum(udp.column("bytes")).as_py()
    scaled = pc.multiply(udp.column("bytes"), udp.column("sampling_rate").cast(pa.uint64()))
    assert est.column("bytes")[0].as_py() == pc.sum(scaled).as_py()
    assert est.column("flows")[0].as_py() == udp.num_rows


def test_series_bins_add_up(atlas: Atlas, truth: pa.Table) -> None:
    got = atlas.series(atlas.select(), bin_seconds=6 * 3600)
    assert sum(got.column("flows").to_pylist()) == truth.num_rows
    bins = got.column("bin").to_pylist()
    assert bins == sorted(bins) and len(bins) == 12


def test_profile_in_and_out(atlas: Atlas, truth: pa.Table) -> None:
    address = _addresses(truth)[0]
    prof = atlas.profile(address)
    by_dir = {r["direction"]: r for r in prof.totals.to_pylist()}
    raw = pack(address)
    out = truth.filter(pc.equal(truth.column("src_addr"), pa.scalar(raw, pa.binary(16))))
    inn = truth.filter(pc.and_(pc.equal(truth.column("dst_addr"), pa.scalar(raw, pa.binary(16))),
                               pc.not_equal(truth.column("src_addr"),
                                            pa.scalar(raw, pa.binary(16)))))
    assert by_dir["out"]["flows"] == out.num_rows
    assert by_dir["in"]["flows"] == inn.num_rows
    assert by_dir["out"]["bytes"] == pc.sum(out.column("bytes")).as_py()
    assert prof.peers.num_rows == 10
    assert sum(r["flows"] for r in prof.daily.to_pylist()) == out.num_rows + inn.num_rows


def test_unknown_address_profile_is_empty_not_an_error(atlas: Atlas) -> None:
    prof = atlas.profile("192.0.2.77")
    assert not prof.seen and prof.first_seen is None


def test_filter_values_are_bound_not_pasted(atlas: Atlas) -> None:
    # A scope can never be widened by the filter: OR inside the filter stays inside its group.
    scope = atlas.select("src port 22").filter
    sel = atlas.select("proto tcp or proto udp", scope=scope)
    got = atlas.flows(sel, limit=N)
    assert set(got.column("src_port").to_pylist()) <= {22}


def test_store_stats(atlas: Atlas) -> None:
    st = atlas.store.stats()
    assert st.rows == N
    live = [Path(atlas.store.root) / f"day={d.day}" / f
            for d in st.days for f in atlas.store.manifest(d.day).live_files()]  # type: ignore[union-attr]
    assert st.bytes == sum(p.stat().st_size for p in live)
    assert st.files == len(live)
    assert len(st.days) == 3
    assert np.all([d.rows > 0 for d in st.days])


@pytest.mark.parametrize("oldest_first", [False, True])
def test_newest_n_of_an_address_are_exactly_the_newest_n(atlas: Atlas, truth: pa.Table,
                                                         oldest_first: bool) -> None:
    for address in _addresses(truth):
        want = _expected(truth, "any", pack(address), pack(address))
        order = "ascending" if oldest_first else "descending"
        want = want.sort_by([("time_start", order)]).slice(0, 50)
        got = atlas.flows(atlas.select(f"ip {address}"), limit=50, oldest_first=oldest_first)
        assert got.column("time_start").to_pylist() == want.column("time_start").to_pylist()
        assert row_keys(got) == row_keys(want)
