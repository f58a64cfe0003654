"""NetFlow v5: a 24-byte header and fixed 48-byte records, decoded as one numpy view."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from flowatlas.collect.batch import be16, be32
from flowatlas.collect.columns import Columns, ipv4_matrix

HEADER = struct.Struct("!HHIIIIBBH")
RECORD = np.dtype([
    ("src", ">u4"), ("dst", ">u4"), ("nexthop", ">u4"), ("in_if", ">u2"), ("out_if", ">u2"),
    ("packets", ">u4"), ("bytes", ">u4"), ("first", ">u4"), ("last", ">u4"),
    ("src_port", ">u2"), ("dst_port", ">u2"), ("pad1", "u1"), ("tcp_flags", "u1"),
    ("protocol", "u1"), ("tos", "u1"), ("src_as", ">u2"), ("dst_as", ">u2"),
    ("src_mask", "u1"), ("dst_mask", "u1"), ("pad2", ">u2"),
])
assert RECORD.itemsize == 48
MAX_RECORDS = 30  # per Cisco's format definition; more is a malformed header


def rejection(data: bytes) -> str:
    """Why :func:`well_formed` rejects this datagram (the skip reason the collector counts)."""
    if len(data) < HEADER.size:
        return "truncated_header"
    count = int.from_bytes(data[2:4], "big")
    if count == 0 or count > MAX_RECORDS:
        return "bad_record_count"
    if len(data) < HEADER.size + count * RECORD.itemsize:
        return "truncated_records"
    raise ValueError("a well-formed NetFlow v5 datagram was taken for a malformed one")


@dataclass(frozen=True)
class V5Headers:
    """Header fields of many datagrams, one array element per datagram."""

    count: npt.NDArray[np.int64]
    sequence: npt.NDArray[np.int64]
    domain: npt.NDArray[np.int64]
    sampling_rate: npt.NDArray[np.int64]
    export_us: npt.NDArray[np.int64]
    uptime_ms: npt.NDArray[np.int64]


def well_formed(buf: npt.NDArray[np.uint8], start: npt.NDArray[np.int64],
                length: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Datagrams whose header and records are all there (the others go to :func:`rejection`);
    ``buf`` must extend at least 24 bytes past every start."""
    count = be16(buf, start + 2)
    return ((length >= HEADER.size) & (count > 0) & (count <= MAX_RECORDS)
            & (length >= HEADER.size + count * RECORD.itemsize))


def headers(buf: npt.NDArray[np.uint8], start: npt.NDArray[np.int64]) -> V5Headers:
    """Header fields of well-formed datagrams starting at ``start``."""
    rate = be16(buf, start + 22) & 0x3FFF
    secs, nsecs = be32(buf, start + 8), be32(buf, start + 12)
    return V5Headers(be16(buf, start + 2), be32(buf, start + 16),
                     (buf[start + 20].astype(np.int64) << 8) | buf[start + 21],
                     np.where(rate == 0, 1, rate), secs * 1_000_000 + nsecs // 1000,
                     be32(buf, start + 4))


def decode_records(records: bytes | npt.NDArray[np.uint8], export_us: npt.NDArray[np.int64],
                   uptime_ms: npt.NDArray[np.int64]) -> Columns:
    """Records of many datagrams at once; ``export_us``/``uptime_ms`` are per record."""
    rec = np.frombuffer(records, dtype=RECORD)

    def to_us(t: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
        behind = (uptime_ms - t.astype(np.int64)) % (1 << 32)
        behind = np.where(behind > (1 << 31), behind - (1 << 32), behind)
        out: npt.NDArray[np.int64] = (export_us - behind * 1000).astype(np.int64)
        return out

    cols: Columns = {
        "time_start": to_us(rec["first"]),
        "time_end": to_us(rec["last"]),
        "src_addr": ipv4_matrix(rec["src"]),
        "dst_addr": ipv4_matrix(rec["dst"]),
    }
    for name in ("src_port", "dst_port", "protocol", "tcp_flags", "packets", "bytes", "in_if",
                 "out_if", "src_as", "dst_as"):
        cols[name] = rec[name]
    return cols
