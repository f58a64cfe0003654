"""Bulk output benchmark: export every flow of a store as CSV (and the other formats) from the
command line, timing wall clock and peak RSS of each exporting process, against named peers on
the same records in the same run:

* ``before``  the flowatlas CLI of an earlier revision (``--before REV``, default the commit
              before the streaming writers), which built the whole result and its CSV text in
              memory before printing;
* ``after``   this tree's CLI, streaming batch by batch through Arrow's writers;
* ``nfdump``  ``nfdump -r FILE -q -o csv`` on the same records, sent as IPFIX to a real nfcapd
              over loopback (with ``--nfdump``; Debian's nfdump).

    python benchmarks/output_bench.py --flows 1000000 --dir bench-data/output --nfdump

Each output goes to a file whose lines are counted, so every tool is checked to have written
every row. Peak RSS is the child's own (``wait4``), not the benchmark's.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from flowatlas.addresses import from_matrix
from flowatlas.schema import FLOW_SCHEMA
from flowatlas.store import FlowStore

REPO = Path(__file__).resolve().parent.parent
START_US = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1_000_000)
DAY_US = 86_400 * 1_000_000


def make_flows(n: int, seed: int = 7) -> pa.Table:
    """``n`` flows over three days: 85% IPv4, 15% IPv6, a Zipf-like host popularity."""
    rng = np.random.default_rng(seed)
    hosts = (rng.zipf(1.3, size=(2, n)) % 200_000).astype(np.uint64)
    mats = []
    for side in hosts:
        m = np.zeros((n, 16), dtype=np.uint8)
        v6 = (side % 100) < 15
        m[~v6, 10:12] = 0xFF
        bits = (side[~v6] * np.uint64(2654435761) + np.uint64(0x0A000000)) % np.uint64(2**32)
        m[~v6, 12:] = bits.astype(">u4").view(np.uint8).reshape(-1, 4)
        m[v6, 0:4] = [0x20, 0x01, 0x0D, 0xB8]
        m[v6, 8:] = (side[v6] * np.uint64(11400714819323198485)).astype(">u8").view(
            np.uint8).reshape(-1, 8)
        mats.append(m)
    # Both ends of a flow in one family (an IPv4 and an IPv6 end cannot share a packet).
    v6_src = ~((mats[0][:, 10] == 0xFF) & (mats[0][:, :10] == 0).all(axis=1))
    mats[1][v6_src, 10:12] = 0
    mats[1][v6_src, 0:4] = [0x20, 0x01, 0x0D, 0xB8]
    mats[1][~v6_src, :10] = 0
    mats[1][~v6_src, 10:12] = 0xFF
    start = START_US + np.sort(rng.integers(0, 3 * DAY_US, n)) // 1000 * 1000
    dur = rng.integers(0, 120_000, n) * 1000
    proto = rng.choice(np.array([6, 17, 1], dtype=np.uint8), n, p=[0.7, 0.25, 0.05])
    packets = rng.integers(1, 200, n).astype(np.uint64)
    return pa.Table.from_arrays([
        pa.array(start, pa.timestamp("us", tz="UTC")),
        pa.array(start + dur, pa.timestamp("us", tz="UTC")),
        from_matrix(mats[0]), from_matrix(mats[1]),
        pa.array(rng.integers(1024, 65535, n), pa.uint16()),
        pa.array(rng.choice([22, 53, 80, 443, 8443], n), pa.uint16()),
        pa.array(proto, pa.uint8()),
        pa.array(np.where(proto == 6, rng.integers(0, 64, n), 0), pa.uint8()),
        pa.array(packets, pa.uint64()),
        pa.array(packets * rng.integers(40, 1500, n).astype(np.uint64), pa.uint64()),
        pa.array(np.ones(n), pa.uint32()),
        from_matrix(np.tile(np.frombuffer(bytes(10) + b"\xff\xff\x7f\x00\x00\x01", np.uint8),
                            (n, 1))),
        pa.array(np.zeros(n), pa.uint32()), pa.array(np.zeros(n), pa.uint32()),
        pa.array(np.zeros(n), pa.uint32()), pa.array(np.zeros(n), pa.uint32()),
        pa.array(np.zeros(n), pa.uint32()),
    ], schema=FLOW_SCHEMA)


def build(root: Path, n: int, with_nfdump: bool) -> tuple[Path, Path | None]:
    store = root / "store"
    marker = root / f"built-{n}"
    nfdir = root / "nfcapd"
    if marker.exists():
        return store, (nfdir if with_nfdump and (root / "nfcapd.done").exists() else None)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    table = make_flows(n)
    s = FlowStore(store)
    for part in table.to_batches(max_chunksize=250_000):
        s.append(pa.Table.from_batches([part]))
    s.compact()
    if with_nfdump:
        send_to_nfcapd(table, nfdir)
    marker.touch()
    return store, (nfdir if with_nfdump else None)


def send_to_nfcapd(table: pa.Table, out: Path) -> None:
    from flowatlas.export import Encoder

    out.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w", str(out),
                             "-B", "8388608"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        enc = Encoder("ipfix")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i, (d, _) in enumerate(enc.encode(table)):
                s.sendto(d, ("127.0.0.1", port))
                if i % 8 == 7:
                    time.sleep(0.0008)  # paced like an exporter; nfcapd must not drop
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    (out.parent / "nfcapd.done").touch()  # outside the directory nfdump -R reads


def checkout(rev: str, root: Path) -> Path:
    """The ``src`` tree of ``rev`` (for the ``before`` peer)."""
    dest = root / f"src-{rev}"
    if not dest.exists():
        data = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"],
                              capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(dest, filter="data")
    return dest / "src"


def measure(name: str, cmd: list[str], out: Path, env: dict[str, str] | None = None
            ) -> dict[str, object]:
    t0 = time.perf_counter()
    with open(out, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{name}: exit {proc.returncode}: {err.strip()[-400:]}")
    with open(out, "rb") as fh:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    return {"name": name, "wall_s": wall, "rss_mib": usage.ru_maxrss / 1024,
            "lines": lines, "bytes": out.stat().st_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=1_000_000)
    ap.add_argument("--dir", default="bench-data/output")
    ap.add_argument("--before", default="a711561",
                    help="git revision of the 'before' CLI (default: before streaming writers)")
    ap.add_argument("--nfdump", action="store_true", help="also nfdump -o csv on the same records")
    ap.add_argument("--formats", default="ndjson,parquet,arrow,line",
                    help="other formats of this tree to time as well")
    args = ap.parse_args()
    root = Path(args.dir)
    store, nfdir = build(root, args.flows, args.nfdump)
    out = root / "out"
    n = str(args.flows)
    py = sys.executable
    results = []
    old_env = {**os.environ, "PYTHONPATH": str(checkout(args.before, root))}
    results.append(measure(f"before ({args.before}) --format csv",
                           [py, "-m", "flowatlas.cli", "query", "-n", n, "--format", "csv",
                            "--store", str(store)], out, env=old_env))
    new_env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    results.append(measure("after -o csv", [py, "-m", "flowatlas.cli", "query", "-n", n, "-o",
                                            "csv", "--store", str(store)], out, env=new_env))
    # A tenth of the rows: a streaming writer's peak RSS should barely move with the size.
    tenth = str(args.flows // 10)
    results.append(measure(f"after -o csv -n {int(tenth):,}",
                           [py, "-m", "flowatlas.cli", "query", "-n", tenth, "-o", "csv",
                            "--store", str(store)], out, env=new_env))
    results.append(measure(f"before --format csv -n {int(tenth):,}",
                           [py, "-m", "flowatlas.cli", "query", "-n", tenth, "--format", "csv",
                            "--store", str(store)], out, env=old_env))
    for fmt in [f for f in args.formats.split(",") if f]:
        results.append(measure(f"after -o {fmt}", [py, "-m", "flowatlas.cli", "query", "-n", n,
                                                   "-o", fmt, "--store", str(store)], out,
                               env=new_env))
    if nfdir is not None:
        files = sorted(p for p in nfdir.iterdir() if p.name.startswith("nfcapd."))
        results.append(measure("nfdump -q -o csv", ["nfdump", "-R", str(nfdir), "-q", "-o",
                                                      "csv"], out,
                               env={**os.environ, "TZ": "UTC"}))
        assert files, "nfcapd wrote no file"
    print(f"{args.flows:,} flows; export of every flow to a file (lines counted)")
    print(f"{'run':34} {'wall s':>8} {'peak RSS MiB':>13} {'lines':>10} {'MB out':>8}")
    for r in results:
        print(f"{r['name']:34} {r['wall_s']:8.2f} {r['rss_mib']:13.0f} {r['lines']:10,} "
              f"{int(r['bytes']) / 1e6:8.1f}")  # type: ignore[call-overload]


if __name__ == "__main__":
    main()
