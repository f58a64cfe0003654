"""Start-up of the ``flowatlas`` command line against ``python -c "import click"``.

The command line is a click program, so its floor is the interpreter plus click: that is the
peer. Times ``flowatlas --version``, ``flowatlas --help`` and a rare-address ``flowatlas query``
on a small simulated store this script builds, each as a fresh process, interleaved with the
peer so both see the same machine load; prints the median of N runs of each and its ratio to
the peer's median (the target is at most 1.5x for ``--version`` and ``--help``).

    .venv/bin/python benchmarks/cli_bench.py [--runs 21] [--flows 200000] [--days 14]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from flowatlas.addresses import unpack
from flowatlas.atlas import Atlas
from flowatlas.query.model import MAX_LIMIT
from flowatlas.simulate import SimConfig, simulate


def flowatlas_command() -> list[str]:
    """The installed console script next to this interpreter (what an analyst runs)."""
    script = Path(sys.executable).parent / "flowatlas"
    found = str(script) if script.exists() else shutil.which("flowatlas")
    if found is None:
        sys.exit("cli_bench: no flowatlas script installed next to this Python or on PATH")
    return [found]


def rare_address(store: Path) -> tuple[str, int]:
    """A source address with the fewest flows (at least one), and its flow count."""
    with Atlas(store) as atlas:
        counts: pa.Table | None = None
        for batch in atlas.iter_flows(Atlas.select(), limit=MAX_LIMIT):
            part = pa.table({"a": batch.column("src_addr")}).group_by("a").aggregate([("a", "count")])
            counts = part if counts is None else pa.concat_tables([counts, part])
    assert counts is not None and counts.num_rows, "the simulated store is empty"
    totals = counts.group_by("a").aggregate([("a_count", "sum")])
    i = int(pc.index(totals["a_count_sum"], pc.min(totals["a_count_sum"])).as_py())
    return unpack(totals["a"][i].as_py()), int(totals["a_count_sum"][i].as_py())


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"cli_bench: {' '.join(cmd)} failed: {done.stderr.decode()[-400:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=21, help="runs of each command (median)")
    ap.add_argument("--flows", type=int, default=200_000, help="flows in the simulated store")
    ap.add_argument("--days", type=float, default=14.0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="cli_bench_") as tmp:
        store = Path(tmp) / "store"
        end = datetime(2026, 11, 30, tzinfo=UTC)
        simulate(store, SimConfig(seed=3, flows=args.flows, days=args.days, end=end))
        address, n = rare_address(store)
        fa = flowatlas_command()
        cases = {
            'python -c "import click"': [sys.executable, "-c", "import click"],
            "flowatlas --version": [*fa, "--version"],
            "flowatlas --help": [*fa, "--help"],
            f"flowatlas query 'host {address}'": [*fa, "query", f"host {address}", "--store",
                                                  str(store)],
        }
        times: dict[str, list[float]] = {k: [] for k in cases}
        for cmd in cases.values():  # one warm-up each: page cache and .pyc files
            timed(cmd)
        for _ in range(args.runs):
            for name, cmd in cases.items():  # interleaved: the same load for every case
                times[name].append(timed(cmd))

    peer = statistics.median(times['python -c "import click"'])
    print(f"store: {args.flows:,} simulated flows over {args.days:g} days; rare address "
          f"{address} ({n} flows as source); median of {args.runs} runs, each a new process")
    print(f"{'command':58} {'median ms':>10} {'min ms':>8} {'x click':>8}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:58} {med * 1000:10.1f} {min(ts) * 1000:8.1f} {med / peer:8.2f}")


if __name__ == "__main__":
    main()
