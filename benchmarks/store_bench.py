"""Store benchmark: build a large store, then time endpoint lookups against a plain full scan.

    python benchmarks/store_bench.py --flows 100000000 --days 90 --dir bench-data/store

Phases run in separate processes so each reports its own peak RSS:
  build    generate flows day by day (a few heavy hosts, a Zipf long tail), append, compact;
  lookups  200 random addresses as source and as destination over the whole window, through
           flowatlas (layout-aware plan) and through a plain full scan of the same Parquet files
           (DuckDB with filter pushdown disabled, so every row group is read), plus a top-20
           talkers aggregation.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from flowatlas.addresses import from_matrix, pack, unpack
from flowatlas.atlas import Atlas
from flowatlas.query.model import FlowsQuery
from flowatlas.schema import FLOW_SCHEMA
from flowatlas.store import FlowStore

DAY_US = 86_400 * 1_000_000
START = datetime(2026, 8, 1, tzinfo=UTC)
HOSTS = 5_000_000
LOOKUP_LIMIT = 1000


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def host_matrix(ids: np.ndarray) -> np.ndarray:
    """Host ids to addresses: 85% IPv4 (mapped), 15% IPv6, deterministic per id."""
    n = len(ids)
    m = np.zeros((n, 16), dtype=np.uint8)
    v6 = (ids % 100) < 15
    v4 = ~v6
    m[v4, 10:12] = 0xFF
    u = ids.astype(np.uint64)
    v4_bits = (u[v4] * np.uint64(2654435761) + np.uint64(0x0B000000)) % np.uint64(2**32)
    m[v4, 12:16] = v4_bits.astype(">u4").view(np.uint8).reshape(-1, 4)
    m[v6, 0:4] = [0x20, 0x01, 0x0D, 0xB8]
    # Multiplication wraps modulo 2**64: a cheap bijective scramble of the id.
    v6_bits = u[v6] * np.uint64(11400714819323198485)
    m[v6, 8:16] = v6_bits.astype(">u8").view(np.uint8).reshape(-1, 8)
    return m


def day_flows(day: int, chunk: int, n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng([seed, day, chunk])
    # Zipf over host ids: a handful of heavy hosts, a long tail of rare ones.
    src = (rng.zipf(1.25, n) - 1) % HOSTS
    dst = (rng.zipf(1.15, n) - 1) % HOSTS
    # Diurnal cycle: more flows in the local afternoon.
    hour = rng.choice(24, n, p=_diurnal())
    start = (int(START.timestamp() * 1e6) + day * DAY_US + hour * 3_600_000_000
             + rng.integers(0, 3_600_000_000, n))
    packets = np.maximum(1, rng.pareto(1.3, n) * 3).astype(np.uint64)
    return pa.Table.from_arrays([
        pa.array(start, pa.timestamp("us", tz="UTC")),
        pa.array(start + rng.integers(0, 120_000_000, n), pa.timestamp("us", tz="UTC")),
        from_matrix(host_matrix(src)),
        from_matrix(host_matrix(dst)),
        pa.array(rng.integers(1024, 65535, n), pa.uint16()),
        pa.array(rng.choice([443, 80, 53, 123, 22, 25, 8080], n,
                            p=[.5, .15, .2, .05, .04, .03, .03]), pa.uint16()),
        pa.array(rng.choice([6, 17, 1], n, p=[.7, .28, .02]), pa.uint8()),
        pa.array(rng.integers(0, 64, n), pa.uint8()),
        pa.array(packets, pa.uint64()),
        pa.array(packets * rng.integers(40, 1500, n).astype(np.uint64), pa.uint64()),
        pa.array(np.full(n, 1000), pa.uint32()),
        from_matrix(np.tile(np.array([0] * 10 + [255, 255, 192, 0, 2, 1], np.uint8), (n, 1))),
        pa.array(np.ones(n), pa.uint32()),
        pa.array(rng.integers(1, 48, n), pa.uint32()),
        pa.array(rng.integers(1, 48, n), pa.uint32()),
        pa.array(rng.integers(0, 70_000, n), pa.uint32()),
        pa.array(rng.integers(0, 70_000, n), pa.uint32()),
    ], schema=FLOW_SCHEMA)


def _diurnal() -> np.ndarray:
    w = 1.0 + 0.8 * np.sin((np.arange(24) - 9) / 24 * 2 * np.pi)
    return w / w.sum()


def build(args: argparse.Namespace) -> dict[str, float]:
    store = FlowStore(args.dir, retention_days=args.days + 1)
    per_day = args.flows // args.days
    gen_s = append_s = 0.0
    chunk = 500_000
    for day in range(args.days):
        for lo in range(0, per_day, chunk):
            t0 = time.perf_counter()
            table = day_flows(day, lo // chunk, min(chunk, per_day - lo), args.seed)
            t1 = time.perf_counter()
            store.append(table)
            t2 = time.perf_counter()
            gen_s += t1 - t0
            append_s += t2 - t1
        print(f"  day {day + 1}/{args.days} appended", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    report = store.compact()
    compact_s = time.perf_counter() - t0
    stats = store.stats()
    return {"flows": stats.rows, "generate_s": gen_s, "append_s": append_s,
            "compact_s": compact_s, "bytes": stats.bytes, "files": stats.files,
            "runs": report.runs_out, "peak_rss_mib": peak_rss_mib()}


def _addresses(args: argparse.Namespace) -> list[str]:
    rng = np.random.default_rng(args.seed + 1)
    # Half the addresses drawn like flows are (heavy hosts likely), half uniformly from the tail.
    ids = np.concatenate([(rng.zipf(1.25, args.lookups // 2) - 1) % HOSTS,
                          rng.integers(0, HOSTS, args.lookups - args.lookups // 2)])
    return [unpack(bytes(row)) for row in host_matrix(ids)]


def lookups(args: argparse.Namespace) -> dict[str, object]:
    atlas = Atlas(FlowStore(args.dir, create=False))
    out: dict[str, object] = {}
    for direction in ("src", "dst"):
        times: list[float] = []
        rows: list[int] = []
        for addr in _addresses(args):
            sel = atlas.select(f"{direction} ip {addr}")
            t0 = time.perf_counter()
            got = atlas.engine.flows(FlowsQuery(sel, LOOKUP_LIMIT))
            times.append(time.perf_counter() - t0)
            rows.append(got.num_rows)
        out[direction] = {"p50_ms": 1000 * float(np.percentile(times, 50)),
                          "p95_ms": 1000 * float(np.percentile(times, 95)),
                          "mean_rows": float(np.mean(rows))}
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def scan(args: argparse.Namespace) -> dict[str, object]:
    """The same lookups as a plain full scan: DuckDB over the same files, pushdown disabled."""
    import duckdb

    files = list(FlowStore(args.dir, create=False).snapshot().primary)
    con = duckdb.connect()
    con.execute("SET disabled_optimizers = 'filter_pushdown,statistics_propagation'")
    out: dict[str, object] = {}
    for direction in ("src", "dst"):
        times: list[float] = []
        for addr in _addresses(args)[: args.scan_lookups]:
            t0 = time.perf_counter()
            con.sql(f"SELECT * FROM read_parquet($1) WHERE {direction}_addr = $2 "
                    f"ORDER BY time_start DESC LIMIT {LOOKUP_LIMIT}",
                    params=[files, pack(addr)]).to_arrow_table()
            times.append(time.perf_counter() - t0)
        out[direction] = {"p50_ms": 1000 * float(np.percentile(times, 50)),
                          "p95_ms": 1000 * float(np.percentile(times, 95))}
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def top(args: argparse.Namespace) -> dict[str, object]:
    atlas = Atlas(FlowStore(args.dir, create=False))
    t0 = time.perf_counter()
    atlas.top(atlas.select(), by="ip", order="bytes", n=20)
    return {"seconds": time.perf_counter() - t0, "peak_rss_mib": peak_rss_mib()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--flows", type=int, default=100_000_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--dir", default="bench-data/store")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lookups", type=int, default=200)
    ap.add_argument("--scan-lookups", type=int, default=10,
                    help="Full scans are slow: how many of the addresses to scan for.")
    ap.add_argument("--phase", choices=["all", "build", "lookups", "scan", "top"], default="all")
    ap.add_argument("--reuse", action="store_true", help="Skip the build if the store exists.")
    args = ap.parse_args()

    if args.phase != "all":
        result = {"build": build, "lookups": lookups, "scan": scan, "top": top}[args.phase](args)
        print(json.dumps(result))
        return

    def phase(name: str) -> dict[str, object]:
        cmd = [sys.executable, __file__, "--phase", name, "--flows", str(args.flows), "--days",
               str(args.days), "--dir", args.dir, "--seed", str(args.seed), "--lookups",
               str(args.lookups), "--scan-lookups", str(args.scan_lookups)]
        res = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True)
        return dict(json.loads(res.stdout.strip().splitlines()[-1]))

    if not (args.reuse and (Path(args.dir) / "store.json").exists()):
        b = phase("build")
        ingest_rate = b["flows"] / b["append_s"]  # type: ignore[operator]
        print(f"build: {b['flows']:,} flows over {args.days} days")
        print(f"  ingest into store: {ingest_rate:,.0f} flows/s (append only; generation "
              f"{b['generate_s']:.0f}s not counted)")
        print(f"  compaction: {b['compact_s']:.0f}s = {b['flows'] / b['compact_s']:,.0f} flows/s "  # type: ignore[operator]
              f"({b['runs']} runs)")
        print(f"  end-to-end ingest+compaction: "
              f"{b['flows'] / (b['append_s'] + b['compact_s']):,.0f} flows/s")  # type: ignore[operator]
        print(f"  store size: {b['bytes']:,} bytes = {b['bytes'] / b['flows']:.1f} bytes/flow "  # type: ignore[operator]
              f"(both sorted copies), {b['files']} files")
        print(f"  peak RSS of the build: {b['peak_rss_mib']:.0f} MiB")
    lk = phase("lookups")
    sc = phase("scan")
    tp = phase("top")
    print(f"lookups: {args.lookups} addresses, newest {LOOKUP_LIMIT} flows each, whole window "
          f"(plain full scan: the first {args.scan_lookups} of them)")
    for direction in ("src", "dst"):
        d, s_ = lk[direction], sc[direction]
        assert isinstance(d, dict) and isinstance(s_, dict)
        print(f"  as {direction}: flowatlas p50 {d['p50_ms']:.1f} ms, p95 {d['p95_ms']:.1f} ms "
              f"(mean {d['mean_rows']:.0f} rows) | plain full scan p50 {s_['p50_ms']:.0f} ms, "
              f"p95 {s_['p95_ms']:.0f} ms | speed-up at p50: {s_['p50_ms'] / d['p50_ms']:.0f}x")
    print(f"  peak RSS: flowatlas lookups {lk['peak_rss_mib']:.0f} MiB, "
          f"full scans {sc['peak_rss_mib']:.0f} MiB")
    print(f"top-20 talkers by bytes (full aggregation over every flow): {tp['seconds']:.1f} s, "
          f"peak RSS {tp['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
