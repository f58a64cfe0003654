"""Flow records under construction: plain numpy columns, turned into FLOW_SCHEMA batches at the end.

Addresses are 1-D arrays of 16-byte opaque values (numpy ``V16``: gathers and masked copies move
one 16-byte item per row, several times faster than (n, 16) uint8 rows) and times are int64
microseconds, so every generator works on whole arrays and the Arrow conversion is one copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from flowatlas.schema import FLOW_SCHEMA

Columns = dict[str, npt.NDArray[Any]]

_DTYPES: dict[str, Any] = {
    "time_start": np.int64, "time_end": np.int64, "src_port": np.uint16, "dst_port": np.uint16,
    "protocol": np.uint8, "tcp_flags": np.uint8, "packets": np.uint64, "bytes": np.uint64,
    "sampling_rate": np.uint32, "source_id": np.uint32, "in_if": np.uint32, "out_if": np.uint32,
    "src_as": np.uint32, "dst_as": np.uint32,
}
_ADDRESSES = ("src_addr", "dst_addr", "exporter")

ADDR = np.dtype("V16")
TCP, UDP = 6, 17
SYN, ACK, PSH, FIN, RST = 0x02, 0x10, 0x08, 0x01, 0x04
TCP_FULL = SYN | ACK | PSH | FIN


def empty(n: int = 0, *, zeroed: bool = True) -> Columns:
    """Columns of ``n`` rows: defaults, or uninitialised (``zeroed=False``) for a caller that
    fills every row itself."""
    new = np.zeros if zeroed else np.empty
    cols: Columns = {name: new(n, dtype=dt) for name, dt in _DTYPES.items()}
    for name in _ADDRESSES:
        cols[name] = new(n, dtype=ADDR)
    if zeroed:
        cols["sampling_rate"][:] = 1
    return cols


def as_addr(matrix: npt.NDArray[np.uint8]) -> npt.NDArray[np.void]:
    """(n, 16) uint8 to the 1-D ``V16`` form used in columns."""
    return np.ascontiguousarray(matrix, dtype=np.uint8).view(ADDR).reshape(-1)


def is_v6(addrs: npt.NDArray[np.void]) -> npt.NDArray[np.bool_]:
    """True where an address is not IPv4-mapped (``::ffff:0:0/96``)."""
    m = addrs.view(np.uint8).reshape(-1, 16)
    mapped: npt.NDArray[np.bool_] = (
        (m[:, :10] == 0).all(axis=1) & (m[:, 10] == 0xFF) & (m[:, 11] == 0xFF))
    return ~mapped


def size(cols: Columns) -> int:
    return int(cols["time_start"].shape[0])


def concat(parts: list[Columns]) -> Columns:
    if not parts:
        return empty()
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def take(cols: Columns, index: npt.NDArray[Any]) -> Columns:
    return {name: col[index] for name, col in cols.items()}


def sort_by_time(cols: Columns) -> tuple[Columns, npt.NDArray[np.intp]]:
    order = np.argsort(cols["time_start"], kind="stable")
    return take(cols, order), order


def to_batch(cols: Columns) -> pa.RecordBatch:
    """Arrow arrays over the columns' own memory (no copy: Arrow keeps the numpy arrays alive)."""
    arrays: list[pa.Array] = []
    n = size(cols)
    for field in FLOW_SCHEMA:
        col = np.ascontiguousarray(cols[field.name],
                                   dtype=ADDR if field.name in _ADDRESSES else _DTYPES[field.name])
        data = pa.py_buffer(col.view(np.uint8))
        arrays.append(pa.Array.from_buffers(field.type, n, [None, data]))
    return pa.RecordBatch.from_arrays(arrays, schema=FLOW_SCHEMA)
