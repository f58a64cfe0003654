"""Builds canonical flow tables with known content for tests (not a fixture file: import it)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from flowatlas.addresses import from_matrix
from flowatlas.schema import FLOW_SCHEMA

BASE = datetime(2026, 11, 1, tzinfo=UTC)
BASE_US = int(BASE.timestamp() * 1_000_000)
DAY_US = 86_400 * 1_000_000


def random_flows(n: int, seed: int = 0, days: int = 3, hosts: int = 400, v6_share: float = 0.3,
                 start_us: int = BASE_US) -> pa.Table:
    """Flows among a small host population (IPv4 and IPv6), skewed so some hosts are heavy."""
    rng = np.random.default_rng(seed)
    pool = np.zeros((hosts, 16), dtype=np.uint8)
    v6 = rng.random(hosts) < v6_share
    pool[~v6, 10:12] = 0xFF
    pool[~v6, 12] = 10
    pool[~v6, 13:16] = rng.integers(0, 256, (int((~v6).sum()), 3))
    pool[v6, 0:2] = [0x20, 0x01]
    pool[v6, 2:4] = [0x0D, 0xB8]
    pool[v6, 8:16] = rng.integers(0, 256, (int(v6.sum()), 8))
    src_i = np.minimum(rng.zipf(1.6, n) - 1, hosts - 1)
    dst_i = rng.integers(0, hosts, n)
    start = start_us + rng.integers(0, days * DAY_US, n)
    return pa.Table.from_arrays(
        [
            pa.array(start, pa.timestamp("us", tz="UTC")),
            pa.array(start + rng.integers(0, 60_000_000, n), pa.timestamp("us", tz="UTC")),
            from_matrix(pool[src_i]),
            from_matrix(pool[dst_i]),
            pa.array(rng.integers(1024, 65535, n), pa.uint16()),
            pa.array(rng.choice([22, 53, 80, 443, 8080], n), pa.uint16()),
            pa.array(rng.choice([6, 17, 1], n, p=[0.7, 0.25, 0.05]), pa.uint8()),
            pa.array(rng.integers(0, 64, n), pa.uint8()),
            pa.array(rng.integers(1, 100, n), pa.uint64()),
            pa.array(rng.integers(40, 150_000, n), pa.uint64()),
            pa.array(rng.choice([1, 100], n), pa.uint32()),
            from_matrix(np.tile(np.array([0] * 10 + [255, 255, 192, 0, 2, 1], np.uint8), (n, 1))),
            pa.array(np.ones(n), pa.uint32()),
            pa.array(rng.integers(0, 8, n), pa.uint32()),
            pa.array(rng.integers(0, 8, n), pa.uint32()),
            pa.array(rng.choice([0, 64500, 64501], n), pa.uint32()),
            pa.array(rng.choice([0, 64500, 64502], n), pa.uint32()),
        ],
        schema=FLOW_SCHEMA,
    )


def row_keys(table: pa.Table) -> list[tuple[object, ...]]:
    """Every row as a hashable tuple, sorted: compares tables as multisets."""
    cols = [table.column(n).to_pylist() for n in FLOW_SCHEMA.names]
    return sorted(zip(*cols, strict=True), key=repr)
