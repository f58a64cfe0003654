"""Enrichment benchmark: the range join against per-address MMDB lookups, in the same run.

* ``flowatlas``  ``Enricher.column`` on both address columns of N flows (the lookup every answer
                 and the ingest stage use: distinct addresses, one searchsorted per table);
* ``maxminddb``  the ``maxminddb`` package's C reader (``Reader.get``, one call per address) on
                 the same AS data converted to an MMDB file (built here with ``mmdb-writer``,
                 cached under ``--dir``). The MMDB holds the AS layer only (number and name);
                 flowatlas also looks up the country layer, so it does more work per row;
* ``maxminddb+unique``  the same reader called once per distinct address, answers spread back
                 with numpy: the fairest use of a per-address reader.

Also: the enrichment stage's cost inside the ingest pipeline (the same batch with and without
it), the added time of identity columns on a rare-address answer (20 flows) and on an IP
profile (five small tables), the time to load the dataset and the memory of its tables.

    python benchmarks/enrich_bench.py --rows 1000000,10000000

Flows use a pool of distinct addresses (``--distinct``, 85% IPv4 drawn from the whole unicast
space, 15% IPv6 inside the dataset's IPv6 ranges), picked with a Zipf-like popularity, as real
traffic repeats its hosts. Each figure is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from flowatlas.addresses import from_matrix
from flowatlas.enrich import Enricher, enricher
from flowatlas.enrich.dataset import Dataset, default_dir
from flowatlas.ranges import ADDR, addr_keys, addr_text

REPO = Path(__file__).resolve().parent.parent


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def address_pool(enrich: Enricher, n: int, seed: int) -> npt.NDArray[np.uint8]:
    """``n`` distinct addresses as an (n, 16) matrix."""
    rng = np.random.default_rng(seed)
    n6 = n * 15 // 100
    m = np.zeros((n, 16), dtype=np.uint8)
    v4 = rng.integers(0x01000000, 0xE0000000, n - n6, dtype=np.uint64).astype(np.uint32)
    m[: n - n6, 10:12] = 0xFF
    m[: n - n6, 12:] = v4.astype(">u4").view(np.uint8).reshape(-1, 4)
    layer = enrich.datasets[0].layers[0]
    lows = np.ascontiguousarray(layer.lows).view(np.uint8).reshape(-1, 16)
    v6_rows = np.flatnonzero(~((lows[:, :10] == 0).all(axis=1) & (lows[:, 10] == 0xFF)))
    pick = rng.choice(v6_rows, n6)
    m[n - n6 :] = lows[pick]
    m[n - n6 :, 8:] = rng.integers(0, 256, (n6, 8), dtype=np.uint8)  # inside the range's /64
    return m


def flows(pool: npt.NDArray[np.uint8], rows: int, seed: int) -> tuple[pa.Array, pa.Array]:
    rng = np.random.default_rng(seed)
    idx = (rng.zipf(1.2, size=(2, rows)) - 1) % len(pool)
    return from_matrix(pool[idx[0]]), from_matrix(pool[idx[1]])


def build_mmdb(enrich: Enricher, path: Path) -> int:
    """The AS layer of the default dataset as an MMDB file; returns its ranges."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPRange, IPSet

    layer = enrich.datasets[0].layers[0]
    lows, highs = addr_text(layer.lows), addr_text(layer.highs)
    names = layer.names.to_pylist()
    writer = MMDBWriter(ip_version=6, database_type="flowatlas-bench-asn", ipv4_compatible=True,
                        description={"en": f"AS layer of {enrich.footer()}"})
    for i, (low, high) in enumerate(zip(lows, highs, strict=True)):
        code = int(layer.name_codes[i])
        writer.insert_network(IPSet(IPRange(low, high)), {
            "autonomous_system_number": int(layer.asn[i]),
            "autonomous_system_organization": names[code] if code >= 0 else ""})
    tmp = path.with_name(path.name + ".tmp")
    writer.to_db_file(str(tmp))
    os.replace(tmp, path)
    return len(lows)


def reader_lookups(reader: object, texts: list[str]) -> list[object]:
    get = reader.get  # type: ignore[attr-defined]
    return [get(t) for t in texts]


def table_bytes(dataset: Dataset) -> int:
    total = 0
    for layer in dataset.layers:
        total += layer.lows.nbytes + layer.highs.nbytes + layer.asn.nbytes
        total += layer.name_codes.nbytes + layer.country_codes.nbytes
        total += layer.names.nbytes + layer.countries.nbytes
        total += layer._v4_lows.nbytes + layer._v4_highs.nbytes
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rows", default="1000000,10000000", help="flow counts, comma-separated")
    ap.add_argument("--distinct", type=int, default=200_000, help="distinct addresses in the pool")
    ap.add_argument("--peer-sample", type=int, default=300_000,
                    help="addresses looked up one by one through maxminddb (rate extrapolated)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=REPO / "bench-data" / "enrich")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    import maxminddb
    import psutil

    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    enrich = enricher()
    load_s = time.perf_counter() - t0
    if not enrich.datasets:
        raise SystemExit(f"no enrichment dataset in {default_dir()}: run scripts/env.sh")
    dataset = enrich.datasets[0]
    rss1 = proc.memory_info().rss
    print(f"dataset: {enrich.footer()} ({dataset.info.version}); "
          f"{', '.join(f'{k} {v:,}' for k, v in dataset.info.ranges.items())} ranges")
    print(f"load: {load_s * 1000:.0f} ms; tables {table_bytes(dataset) / 2**20:.1f} MiB in arrays "
          f"(process RSS +{(rss1 - rss0) / 2**20:.1f} MiB, memory-mapped files)")

    args.dir.mkdir(parents=True, exist_ok=True)
    mmdb = args.dir / f"asn-{dataset.info.version}.mmdb"
    if not mmdb.exists():
        t0 = time.perf_counter()
        n = build_mmdb(enrich, mmdb)
        print(f"built {mmdb} from {n:,} AS ranges in {time.perf_counter() - t0:.0f} s "
              f"({mmdb.stat().st_size / 2**20:.1f} MiB)")
    reader = maxminddb.open_database(str(mmdb), maxminddb.MODE_MMAP_EXT)
    print(f"peer: maxminddb {maxminddb.__version__} C reader ({type(reader).__module__}), {mmdb.name}")

    pool = address_pool(enrich, args.distinct, args.seed)
    pool_text = addr_text(pool.view(ADDR).ravel())
    # The same answers: the reader and the range join agree on the AS number.
    sample = pool[: 5000]
    ours = enrich.keys(np.ascontiguousarray(sample).view(ADDR).ravel()).asn
    theirs = [r.get("autonomous_system_number", 0) if isinstance(r, dict) else 0
              for r in reader_lookups(reader, pool_text[:5000])]
    agree = float(np.mean(ours == np.array(theirs, dtype=np.uint32)))
    print(f"agreement on AS numbers, 5,000 addresses: {agree * 100:.2f}%")

    print()
    print(f"{'rows':>12} {'flowatlas rows/s':>18} {'maxminddb rows/s':>18} {'ratio':>7} "
          f"{'mmdb+unique rows/s':>19} {'ratio':>7}")
    for rows in (int(x) for x in args.rows.split(",")):
        src, dst = flows(pool, rows, args.seed)
        ours_s = best(lambda src=src, dst=dst: (enrich.column(src), enrich.column(dst)),
                      args.repeat)
        # Per address, as a reader is used: two lookups per row, on a sample, rate extrapolated.
        k = min(args.peer_sample, rows)
        texts = addr_text(np.concatenate([addr_keys(src.slice(0, k // 2)),
                                          addr_keys(dst.slice(0, k // 2))]))
        peer_s = best(lambda texts=texts: reader_lookups(reader, texts), args.repeat)
        peer_rows = (len(texts) / 2) / peer_s

        def unique_peer(src: pa.Array = src, dst: pa.Array = dst) -> None:
            for col in (src, dst):
                keys = addr_keys(col)
                uniq, inverse = np.unique(keys, return_inverse=True)
                answers = reader_lookups(reader, addr_text(uniq))
                asn = np.array([a.get("autonomous_system_number", 0) if isinstance(a, dict)
                                else 0 for a in answers], dtype=np.uint32)
                asn[inverse]

        uniq_s = best(unique_peer, 1 if rows > 2_000_000 else args.repeat)
        print(f"{rows:>12,} {rows / ours_s:>18,.0f} {peer_rows:>18,.0f} "
              f"{rows / ours_s / peer_rows:>6.1f}x {rows / uniq_s:>19,.0f} "
              f"{uniq_s / ours_s:>6.1f}x")

    # -- cost inside the ingest pipeline -----------------------------------------------------
    import tempfile

    from flowatlas.ingest import pipeline_for
    from flowatlas.schema import FLOW_SCHEMA
    from flowatlas.store import FlowStore

    n = 1_000_000
    src, dst = flows(pool, n, args.seed + 1)
    now_us = int(time.time() * 1e6)
    batch = pa.table({
        "time_start": pa.array(np.full(n, now_us), pa.int64()).cast(
            FLOW_SCHEMA.field("time_start").type),
        "src_addr": src, "dst_addr": dst, "bytes": pa.array(np.ones(n), pa.uint64()),
    })
    with tempfile.TemporaryDirectory() as tmp:
        store = FlowStore(Path(tmp) / "s", create=True)
        with_stage = pipeline_for(store, optouts=False)
        without = pipeline_for(store, optouts=False, enrich=False)
        t_with = best(lambda: with_stage(batch), args.repeat)
        t_without = best(lambda: without(batch), args.repeat)
        append_s = best(lambda: store.append(without(batch)), 1)
    print()
    print(f"ingest pipeline, {n:,} flows (src_as/dst_as 0): {t_without * 1000:.0f} ms without "
          f"enrichment, {t_with * 1000:.0f} ms with (+{(t_with - t_without) * 1000:.0f} ms, "
          f"{n / max(t_with - t_without, 1e-9):,.0f} flows/s for the stage); "
          f"the store's append of the same batch: {append_s * 1000:.0f} ms")

    # -- added latency on small answers ------------------------------------------------------
    from flowatlas.formats.identity import with_identity

    def latency(tables: list[pa.Table]) -> float:
        runs = []
        for _ in range(200):
            t0 = time.perf_counter()
            for t in tables:
                with_identity(t, enricher())  # as the renderers call it: cached enricher
            runs.append(time.perf_counter() - t0)
        return statistics.median(runs)

    rare = pa.table({"src_addr": src.slice(0, 20), "dst_addr": dst.slice(0, 20),
                     "bytes": pa.array(np.ones(20), pa.uint64())})
    peers = pa.table({"peer": src.slice(0, 10), "flows": pa.array(np.ones(10), pa.uint64())})
    plain = pa.table({"local_port": pa.array(np.arange(10), pa.uint16())})
    profile = [plain, peers, plain, plain, plain]
    print(f"added latency (median of 200): rare-address answer of 20 flows "
          f"{latency([rare]) * 1000:.2f} ms; IP profile (5 tables, 10 peers) "
          f"{latency(profile) * 1000:.2f} ms; a one-address profile identity "
          f"{latency([pa.table({'ip': src.slice(0, 1)})]) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
