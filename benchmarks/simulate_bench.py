"""Simulator throughput into a FlowStore, against plain pyarrow.parquet.write_table of the same
batches (the peer: the cost of just encoding the same Arrow data to Parquet, zstd, same row
groups), plus peak RSS of a large run in a child process.

    .venv/bin/python benchmarks/simulate_bench.py [--flows 5000000] [--large 100000000]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flowatlas.simulate import SimConfig, Simulation, simulate
from flowatlas.store import FlowStore
from flowatlas.store.flowstore import ROW_GROUP_ROWS

END = datetime(2026, 1, 15, tzinfo=UTC)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=5_000_000)
    ap.add_argument("--large", type=int, default=0, help="also measure peak RSS at this size")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    config = SimConfig(seed=1, flows=args.flows, end=END)
    tmp = Path(tempfile.mkdtemp(prefix="simbench-"))
    try:
        if args.child:
            t = time.perf_counter()
            truth = simulate(tmp / "store", config)
            secs = time.perf_counter() - t
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"{truth.flows['written']} {secs:.2f} {rss:.0f}")
            return
        sim = Simulation(config)
        t = time.perf_counter()
        batches = list(sim.batches())
        gen = time.perf_counter() - t
        rows = sum(b.num_rows for b in batches)
        t = time.perf_counter()
        for i, b in enumerate(batches):
            pq.write_table(pa.Table.from_batches([b]), tmp / f"peer-{i}.parquet",
                           row_group_size=ROW_GROUP_ROWS, compression="zstd")
        peer = time.perf_counter() - t
        del batches
        for threaded, label in ((False, "one thread"), (True, "generate || write")):
            shutil.rmtree(tmp / "store", ignore_errors=True)
            t = time.perf_counter()
            truth = simulate(FlowStore(tmp / "store"), config, threaded=threaded)
            secs = time.perf_counter() - t
            print(f"simulate -> FlowStore ({label}): {truth.flows['written']:,} flows in "
                  f"{secs:.2f}s = {truth.flows['written'] / secs / 1e6:.2f} M flows/s")
        print(f"generation only (Arrow batches, no write): {rows / gen / 1e6:.2f} M flows/s")
        print(f"peer: pyarrow.parquet.write_table of the same batches (zstd): "
              f"{rows / peer / 1e6:.2f} M flows/s")
        print(f"generation alone takes {gen / peer:.2f}x the time of the peer's Parquet write")
        if args.large:
            out = subprocess.run([sys.executable, __file__, "--flows", str(args.large),
                                  "--child"], capture_output=True, text=True, check=True).stdout
            written, secs, rss = out.split()
            print(f"large run: --flows {args.large:,}: {int(written):,} flows written in "
                  f"{float(secs):.1f}s ({int(written) / float(secs) / 1e6:.2f} M/s), "
                  f"peak RSS {rss} MiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
