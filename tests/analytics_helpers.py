"""Hand-built flows for the analytics tests: a few numpy columns to a FLOW_SCHEMA table."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from flowatlas.addresses import pack_many
from flowatlas.schema import FLOW_SCHEMA

BASE_US = 1_780_000_000 * 1_000_000  # a fixed instant (2026-05-28) so tests never depend on now


def flows(src: list[str] | np.ndarray, dst: list[str] | np.ndarray, start_s: Any, *,
          dur_s: Any = 1.0, sport: Any = 40000, dport: Any = 443, proto: int = 6,
          flags: Any = 0x1B, packets: Any = 10, bytes_: Any = 1000, rate: Any = 1) -> pa.Table:
    start = np.asarray(start_s, dtype=np.float64)
    n = len(start)

    def col(v: Any, dtype: Any) -> np.ndarray:
        return np.broadcast_to(np.asarray(v), (n,)).astype(dtype)

    src_l = list(np.broadcast_to(np.asarray(src, dtype=object), (n,)))
    dst_l = list(np.broadcast_to(np.asarray(dst, dtype=object), (n,)))
    t0 = (BASE_US + start * 1e6).astype(np.int64)
    t1 = t0 + (col(dur_s, np.float64) * 1e6).astype(np.int64)
    data = {
        "time_start": pa.array(t0, pa.int64()).cast(pa.timestamp("us", "UTC")),
        "time_end": pa.array(t1, pa.int64()).cast(pa.timestamp("us", "UTC")),
        "src_addr": pack_many(src_l), "dst_addr": pack_many(dst_l),
        "src_port": col(sport, np.uint16), "dst_port": col(dport, np.uint16),
        "protocol": col(proto, np.uint8), "tcp_flags": col(flags, np.uint8),
        "packets": col(packets, np.uint64), "bytes": col(bytes_, np.uint64),
        "sampling_rate": col(rate, np.uint32),
    }
    cols = []
    for f in FLOW_SCHEMA:
        if f.name in data:
            cols.append(pa.array(data[f.name]).cast(f.type))
        elif pa.types.is_fixed_size_binary(f.type):
            cols.append(pack_many(["192.0.2.1"] * n))
        else:
            cols.append(pa.array(np.zeros(n, dtype=np.int64)).cast(f.type))
    return pa.Table.from_arrays(cols, schema=FLOW_SCHEMA)
