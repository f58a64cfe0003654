"""Decoded v9/IPFIX field values to canonical flow columns, times included.

Times: v9 and IPFIX flowStart/EndSysUpTime (21/22) are milliseconds of the exporter's uptime;
v9 anchors them on the header's sysUptime and export time, IPFIX on systemInitTimeMilliseconds
(160) when the record carries it. IPFIX absolute times come in seconds (150/151), milliseconds
(152/153) or NTP-format micro/nanoseconds (154-157). A record with no time takes the export time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from flowatlas.collect.columns import Columns, ipv4_matrix
from flowatlas.collect.records import Values
from flowatlas.protocols.elements import (
    ADDRESS_ELEMENTS,
    CANONICAL,
    ICMP_ELEMENTS,
    IE,
    SAMPLER_ID_ELEMENTS,
)

NTP_EPOCH_OFFSET = 2_208_988_800
"""Seconds from 1900-01-01 (NTP era 0) to 1970-01-01."""

TIME_ELEMENTS = frozenset({
    IE.FLOW_START_SYS_UP_TIME, IE.FLOW_END_SYS_UP_TIME, IE.FLOW_START_SECONDS,
    IE.FLOW_END_SECONDS, IE.FLOW_START_MILLISECONDS, IE.FLOW_END_MILLISECONDS,
    IE.FLOW_START_MICROSECONDS, IE.FLOW_END_MICROSECONDS, IE.FLOW_START_NANOSECONDS,
    IE.FLOW_END_NANOSECONDS, IE.SYSTEM_INIT_TIME_MILLISECONDS,
})

SAMPLING_ELEMENTS = frozenset({
    IE.SAMPLING_INTERVAL, IE.SAMPLING_ALGORITHM, IE.SAMPLER_RANDOM_INTERVAL,
    IE.SAMPLING_PACKET_INTERVAL, IE.SAMPLING_PACKET_SPACE, IE.SAMPLING_SIZE,
    IE.SAMPLING_POPULATION, *SAMPLER_ID_ELEMENTS,
})

WANTED: frozenset[int] = frozenset(
    {int(m.element) for m in CANONICAL} | {int(e) for e in ADDRESS_ELEMENTS}
    | {int(e) for e in TIME_ELEMENTS} | {int(e) for e in SAMPLING_ELEMENTS}
    | {int(IE.OCTET_TOTAL_COUNT), int(IE.PACKET_TOTAL_COUNT)} | {int(e) for e in ICMP_ELEMENTS}
)
"""Elements a data record is decoded for; everything else is skipped by its length."""

OPTIONS_WANTED: frozenset[int] = frozenset(
    {int(e) for e in SAMPLING_ELEMENTS} | {int(IE.SYSTEM_INIT_TIME_MILLISECONDS)}
)
"""Options records are read for sampling rates and the exporter's boot time (softflowd and
others send systemInitTimeMilliseconds once, in options data, not in every flow record)."""

_FALLBACK = {"bytes": IE.OCTET_TOTAL_COUNT, "packets": IE.PACKET_TOTAL_COUNT}


def _ntp_to_us(v: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    secs = (v >> np.uint64(32)).astype(np.int64) - NTP_EPOCH_OFFSET
    frac = v & np.uint64(0xFFFFFFFF)
    return secs * 1_000_000 + ((frac * np.uint64(1_000_000)) >> np.uint64(32)).astype(np.int64)


Scalar = int | npt.NDArray[np.int64]
"""A header value: one per message, or one per record when sets of many messages are batched."""


def _uptime_to_us(t: npt.NDArray[Any], export_us: Scalar, uptime_ms: Scalar
                  ) -> npt.NDArray[np.int64]:
    # Milliseconds before the export; wrap-around of the 32-bit uptime counter folds back.
    behind = (np.asarray(uptime_ms, dtype=np.int64) - t.astype(np.int64)) % (1 << 32)
    behind = np.where(behind > (1 << 31), behind - (1 << 32), behind)
    return export_us - behind * 1000


def _times(values: Values, n: int, version: int, export_us: Scalar, uptime_ms: Scalar | None,
           init_ms: int | None) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    out: list[npt.NDArray[np.int64] | None] = [None, None]
    for i, (up, s, ms, us, ns) in enumerate((
        (IE.FLOW_START_SYS_UP_TIME, IE.FLOW_START_SECONDS, IE.FLOW_START_MILLISECONDS,
         IE.FLOW_START_MICROSECONDS, IE.FLOW_START_NANOSECONDS),
        (IE.FLOW_END_SYS_UP_TIME, IE.FLOW_END_SECONDS, IE.FLOW_END_MILLISECONDS,
         IE.FLOW_END_MICROSECONDS, IE.FLOW_END_NANOSECONDS),
    )):
        if ms in values:
            out[i] = values[ms].astype(np.int64) * 1000
        elif us in values:
            out[i] = _ntp_to_us(values[us])
        elif ns in values:
            out[i] = _ntp_to_us(values[ns])
        elif s in values:
            out[i] = values[s].astype(np.int64) * 1_000_000
        elif up in values:
            if version == 9 and uptime_ms is not None:
                out[i] = _uptime_to_us(values[up], export_us, uptime_ms)
            elif IE.SYSTEM_INIT_TIME_MILLISECONDS in values:
                init = values[IE.SYSTEM_INIT_TIME_MILLISECONDS].astype(np.int64)
                out[i] = (init + values[up].astype(np.int64)) * 1000
            elif init_ms is not None:
                out[i] = (np.int64(init_ms) + values[up].astype(np.int64)) * 1000
    start, end = out
    if start is None:
        start = end if end is not None else np.broadcast_to(
            np.asarray(export_us, dtype=np.int64), (n,)).copy()
    if end is None:
        end = start
    return start, end


def _icmp_into_port(values: Values, cols: Columns) -> None:
    """ICMP type/code sent in its own element (softflowd v9/IPFIX do) goes to dst_port."""
    icmp = next((values[e] for e in ICMP_ELEMENTS if e in values and values[e].ndim == 1), None)
    proto = cols.get("protocol")
    if icmp is None or proto is None:
        return
    port = cols.get("dst_port")
    is_icmp = np.isin(proto, (1, 58))
    if port is None:
        cols["dst_port"] = np.where(is_icmp, icmp, 0).astype(np.uint64)
    else:
        # An exporter that already put it in the port (or sent both) keeps its port value.
        cols["dst_port"] = np.where(is_icmp & (port == 0), icmp, port).astype(np.uint64)


def flow_columns(values: Values, n: int, *, version: int, export_us: Scalar,
                 uptime_ms: Scalar | None = None, init_ms: int | None = None) -> Columns:
    """Canonical columns for ``n`` decoded data records (sampling and exporter come later)."""
    cols: Columns = {}
    for m in CANONICAL:
        v = values.get(m.element)
        if v is None and m.column in _FALLBACK:
            v = values.get(_FALLBACK[m.column])
        if v is not None and v.ndim == 1:
            cols[m.column] = v
    _icmp_into_port(values, cols)
    for element, (column, width) in ADDRESS_ELEMENTS.items():
        v = values.get(element)
        if v is None or column in cols:
            continue
        if width == 4 and v.ndim == 1:
            cols[column] = ipv4_matrix(v)
        elif width == 16 and v.ndim == 2 and v.shape[1] == 16:
            cols[column] = v
    cols["time_start"], cols["time_end"] = _times(values, n, version, export_us, uptime_ms,
                                                 init_ms)
    return cols
