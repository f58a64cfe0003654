"""Decoded flows as canonical columns, and their assembly into one Arrow table."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from flowatlas.addresses import from_matrix
from flowatlas.schema import ADDRESS_FIELDS, DEFAULTS, FLOW_SCHEMA, TIME_TYPE

Columns = dict[str, npt.NDArray[Any]]
"""Canonical column -> numpy array: times int64 µs, addresses (n, 16) uint8, the rest integers."""

_NUMPY_TYPES: dict[str, type[np.generic]] = {
    f.name: np.dtype(f.type.to_pandas_dtype()).type
    for f in FLOW_SCHEMA
    if f.name not in ADDRESS_FIELDS and not pa.types.is_timestamp(f.type)
}


def ipv4_matrix(values: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """IPv4 addresses as integers to IPv4-mapped (n, 16) byte rows."""
    n = len(values)
    # Bytes 8..15 of each row as one little-endian word: 00 00 ff ff, then the address in
    # network order (its big-endian bytes read as little-endian); one pass instead of three.
    m = np.zeros((n, 2), dtype="<u8")
    address = values.astype(">u4").view("<u4").astype(np.uint64)
    m[:, 1] = (address << np.uint64(32)) | np.uint64(0xFFFF0000)
    return m.view(np.uint8)


def to_table(parts: list[tuple[int, Columns]]) -> pa.Table | None:
    """Concatenate decoded parts into one table in FLOW_SCHEMA; None when there are no rows."""
    parts = [(n, c) for n, c in parts if n > 0]
    if not parts:
        return None
    total = sum(n for n, _ in parts)
    arrays: list[pa.Array] = []
    for field in FLOW_SCHEMA:
        name = field.name
        chunks = []
        for n, cols in parts:
            col = cols.get(name)
            if col is None:
                if name in ADDRESS_FIELDS:
                    col = np.zeros((n, 16), dtype=np.uint8)
                elif name == "time_end":
                    col = cols["time_start"]
                else:
                    col = np.full(n, DEFAULTS.get(name, 0), dtype=_NUMPY_TYPES[name])
            chunks.append(col)
        joined = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        # The arrays were built for this table: Arrow takes their memory as it is, no copies.
        if name in ADDRESS_FIELDS:
            arrays.append(from_matrix(joined, copy=False))
        elif name in ("time_start", "time_end"):
            times = np.ascontiguousarray(joined, dtype=np.int64)
            arrays.append(pa.Array.from_buffers(TIME_TYPE, total, [None, pa.py_buffer(times)]))
        else:
            values = np.ascontiguousarray(joined, dtype=_NUMPY_TYPES[name])
            arrays.append(pa.Array.from_buffers(field.type, total, [None, pa.py_buffer(values)]))
    assert all(len(a) == total for a in arrays)
    return pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA)
