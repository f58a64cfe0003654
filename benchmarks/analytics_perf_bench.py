"""Investigations on a large store: wall time, peak RSS and rows read per command.

    .venv/bin/python benchmarks/analytics_perf_bench.py [--store bench-data/store]

Runs against an existing store (default: the 100-million-flow, 90-day store that
``benchmarks/store_bench.py`` builds). That store has no planted scenarios, so seeds are picked
from one day's traffic (one aggregate over a 1-day window, never a scan per seed):

* graph    2 hops from a mid-popularity address (rank ~1000 that day) and a tail address
           (one flow that day), over the whole window;
* victims  5 addresses of decreasing popularity (day ranks ~30, ~300, ~3000, ~30000, tail)
           taken as "C2s", over the whole window;
* trace    a 12-hop relay chain: the simulator plants one (plus a 1-hop chain, cover sessions
           and 2,000 background flows) in a separate small store, and those rows are APPENDED
           to the benchmark store once (a marker file next to the store remembers it); the trace
           runs from the chain's target at the session's time.

Each command runs in its own process so its peak RSS (``ru_maxrss``, interpreter and imports
included) is its own. The peer figure is a plain full scan of the same store in the same run:
two whole-window aggregates (top destination ports, and the row count).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from flowatlas.atlas import Atlas
from flowatlas.formats import to_records
from flowatlas.query.model import AggregateQuery, FlowsQuery, Selection
from flowatlas.query.window import Window

SINCE = datetime(2026, 8, 1, tzinfo=UTC)
UNTIL = datetime(2026, 10, 30, tzinfo=UTC)
SEED_DAY = datetime(2026, 9, 15, tzinfo=UTC)
TRACE_END = datetime(2026, 10, 16, tzinfo=UTC)


class CountingEngine:
    """Wraps the engine to count queries and the rows they hand back (what "touched" means)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.queries = 0
        self.rows = 0

    def flows(self, query: FlowsQuery) -> pa.Table:
        t = self.inner.flows(query)
        self.queries += 1
        self.rows += t.num_rows
        return t

    def iter_flows(self, query: FlowsQuery, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        self.queries += 1
        for b in self.inner.iter_flows(query, batch_rows):
            self.rows += b.num_rows
            yield b

    def aggregate(self, query: AggregateQuery) -> pa.Table:
        t = self.inner.aggregate(query)
        self.queries += 1
        self.rows += t.num_rows
        return t

    def close(self) -> None:
        self.inner.close()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def whole() -> Selection:
    return Selection(window=Window(SINCE, UNTIL))


def phase_seeds(atlas: Atlas) -> dict[str, Any]:
    day = Selection(window=Window(SEED_DAY, SEED_DAY + timedelta(days=1)))
    t = atlas.aggregate(AggregateQuery(day, keys=("ip",), limit=None))
    recs = to_records(t.select(["ip", "flows"]))
    n = len(recs)

    def at(rank: int) -> str:
        return str(recs[min(rank, n - 1)]["ip"])

    tail = [r["ip"] for r in recs if r["flows"] == 1]
    rng = np.random.default_rng(5)
    tails = [str(tail[i]) for i in rng.choice(len(tail), 2, replace=False)]
    return {"addresses_that_day": n, "graph": [at(1000), tails[0]],
            "graph_flows_that_day": [recs[1000]["flows"], 1],
            "c2": [at(30), at(300), at(3000), at(30000), tails[1]],
            "c2_flows_that_day": [recs[min(k, n - 1)]["flows"] for k in (30, 300, 3000, 30000)]
            + [1]}


def phase_plant(store: Path, marker: Path) -> dict[str, Any]:
    from flowatlas.simulate import ScenarioConfig, SimConfig, simulate
    from flowatlas.store import FlowStore

    sim_dir = marker.parent / "analytics-trace-sim"
    cfg = SimConfig(seed=12, flows=2_000, days=1, end=TRACE_END, sampling=(1,),
                    observe_share=1.0, scenarios=ScenarioConfig(
                        c2=0, relays=2, max_hops=12, enterprise=0, talkers=0, cover=3))
    truth = simulate(sim_dir / "store", cfg, truth_path=sim_dir / "truth.json")
    chain = next(c for c in truth.relays if c["hops"] == 12)
    table = pa.concat_tables(pa.Table.from_batches([b]) for b in
                             FlowStore(sim_dir / "store", create=False).scan())
    appended = FlowStore(store, create=False).append(table)
    info = {"appended_rows": appended, "chain": chain}
    marker.write_text(json.dumps(info, default=str))
    return {"appended_rows": appended}


def phase_graph(atlas: Atlas, seeds: list[str]) -> dict[str, Any]:
    from flowatlas.analytics import peer_graph

    g = peer_graph(atlas, seeds, whole(), hops=2)
    hubs = int(sum(g.nodes.column("hub").to_pylist()))
    return {"result": f"{g.nodes.num_rows} nodes ({hubs} hubs), {g.edges.num_rows} edges"}


def phase_victims(atlas: Atlas, c2s: list[str]) -> dict[str, Any]:
    from flowatlas.analytics import classify_peers

    r = classify_peers(atlas, c2s, whole())
    labels = r.peers.column("label").to_pylist()
    counts = {k: labels.count(k) for k in sorted(set(labels))}
    return {"result": f"{r.flows} flows, {r.peers.num_rows} (peer, C2) rows {counts}"}


def phase_trace(atlas: Atlas, marker: Path) -> dict[str, Any]:
    from flowatlas.analytics import trace

    chain = json.loads(marker.read_text())["chain"]
    at = datetime.fromisoformat(chain["session_start"].replace("Z", "+00:00"))
    rep = trace(atlas, chain["path"][-1], at + timedelta(seconds=90))
    right = rep.path == chain["path"]
    return {"result": f"{len(rep.path) - 2} hops found of {chain['hops']}, path "
                      f"{'right' if right else 'WRONG'}, confidence {rep.confidence:.2f}"}


def phase_scan(atlas: Atlas) -> dict[str, Any]:
    t = atlas.top(whole(), by="dst_port", n=10)
    total = int(atlas.aggregate(AggregateQuery(whole(), keys=(), limit=None))
                .column("flows")[0].as_py())
    return {"result": f"top {t.num_rows} dst ports; {total:,} flows in the store"}


def run_phase(args: argparse.Namespace) -> None:
    store = Path(args.store)
    marker = Path(args.marker)
    if args.phase == "plant":
        out = phase_plant(store, marker)
        out["peak_rss_mib"] = peak_rss_mib()
        print(json.dumps(out))
        return
    atlas = Atlas(store)
    counter = CountingEngine(atlas.engine)
    atlas.engine = counter  # type: ignore[assignment]
    t0 = time.perf_counter()
    if args.phase == "seeds":
        out = phase_seeds(atlas)
    elif args.phase == "graph":
        out = phase_graph(atlas, args.addr)
    elif args.phase == "victims":
        out = phase_victims(atlas, args.addr)
    elif args.phase == "trace":
        out = phase_trace(atlas, marker)
    else:
        out = phase_scan(atlas)
    out["wall_s"] = time.perf_counter() - t0
    out["queries"] = counter.queries
    out["rows"] = counter.rows
    out["peak_rss_mib"] = peak_rss_mib()
    atlas.close()
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--store", default="bench-data/store")
    ap.add_argument("--marker", default=None,
                    help="where the planted chain's truth is kept (default: next to the store)")
    ap.add_argument("--phase", choices=["all", "seeds", "plant", "graph", "victims", "trace",
                                        "scan"], default="all")
    ap.add_argument("--addr", nargs="*", default=[])
    ap.add_argument("--no-scan", action="store_true", help="skip the full-scan peer figure")
    args = ap.parse_args()
    store = Path(args.store)
    args.marker = args.marker or str(store.parent / f"{store.name}.analytics-trace.json")
    if not (store / "store.json").exists():
        sys.exit(f"no store at {store}: build it with benchmarks/store_bench.py")
    if args.phase != "all":
        run_phase(args)
        return

    def phase(name: str, addr: list[str] | None = None) -> dict[str, Any]:
        cmd = [sys.executable, __file__, "--store", args.store, "--marker", args.marker,
               "--phase", name, "--addr", *(addr or [])]
        res = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True)
        return dict(json.loads(res.stdout.strip().splitlines()[-1]))

    seeds = phase("seeds")
    print(f"store {args.store}: {SINCE:%Y-%m-%d}..{UNTIL:%Y-%m-%d}; seeds from "
          f"{SEED_DAY:%Y-%m-%d} ({seeds['addresses_that_day']:,} addresses that day, one "
          f"aggregate: {seeds['wall_s']:.2f} s)")
    print(f"  graph seeds {seeds['graph']} (flows that day {seeds['graph_flows_that_day']})")
    print(f"  C2s {seeds['c2']} (flows that day {seeds['c2_flows_that_day']})")
    if not Path(args.marker).exists():
        p = phase("plant")
        print(f"  planted a simulated 12-hop relay chain: appended {p['appended_rows']:,} rows "
              f"to {args.store} (once; remembered in {args.marker})")
    else:
        print(f"  12-hop relay chain already appended (see {args.marker})")
    rows = [("graph --hops 2 (2 seeds)", phase("graph", seeds["graph"])),
            ("victims (5 C2s, 90 days)", phase("victims", seeds["c2"])),
            ("trace (12-hop chain)", phase("trace"))]
    if not args.no_scan:
        rows.append(("peer: full scans (top ports, count)", phase("scan")))
    print()
    print(f"{'command':<37}{'wall s':>8}{'peak RSS MiB':>14}{'queries':>9}{'rows back':>11}  result")
    for name, r in rows:
        print(f"{name:<37}{r['wall_s']:>8.2f}{r['peak_rss_mib']:>14.0f}{r['queries']:>9}"
              f"{r['rows']:>11,}  {r['result']}")
    if not args.no_scan:
        scan = rows[-1][1]["wall_s"]
        print("\ntime as a share of the full-scan peer: " + ", ".join(
            f"{name.split()[0]} {r['wall_s'] / scan:.2f}x" for name, r in rows[:-1]))


if __name__ == "__main__":
    main()
