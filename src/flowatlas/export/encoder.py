"""Arrow flow batches to NetFlow v9 (RFC 3954) or IPFIX (RFC 7011) datagrams.

Records of one observation domain (``source_id``) and address family are laid out at once in a
big-endian numpy struct array and cut into datagrams of up to ``mtu`` bytes; only the 16- or
20-byte headers are built per datagram. Each domain gets its templates and an options record
with its sampling rate (v9: IE 34/35 scoped to the system; IPFIX: 305/306 scoped to the domain)
before its first data and again every ``refresh`` datagrams, as UDP exporters do.

v9 times are sysUptime milliseconds: the simulated router "booted" a day before the first flow
it exports, and each header's export time is a whole second after its latest flow end, so
decoders recover the millisecond times exactly.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from flowatlas.addresses import to_matrix
from flowatlas.protocols.elements import IE

PROTOCOLS = ("ipfix", "v9")
TEMPLATE_V4, TEMPLATE_V6, TEMPLATE_OPTIONS = 256, 257, 258
_OBSERVATION_DOMAIN_ID = 149  # IPFIX scope element
_V9_SCOPE_SYSTEM = 1
_DAY_MS = 86_400_000

# (element, length, numpy field) common to both families; addresses come first.
_COMMON: tuple[tuple[int, int, str], ...] = (
    (IE.SOURCE_TRANSPORT_PORT, 2, ">u2"),
    (IE.DESTINATION_TRANSPORT_PORT, 2, ">u2"),
    (IE.PROTOCOL_IDENTIFIER, 1, "u1"),
    (IE.TCP_CONTROL_BITS, 1, "u1"),
    (IE.PACKET_DELTA_COUNT, 8, ">u8"),
    (IE.OCTET_DELTA_COUNT, 8, ">u8"),
    (IE.INGRESS_INTERFACE, 4, ">u4"),
    (IE.EGRESS_INTERFACE, 4, ">u4"),
    (IE.BGP_SOURCE_AS_NUMBER, 4, ">u4"),
    (IE.BGP_DESTINATION_AS_NUMBER, 4, ">u4"),
)
_COLUMN = {
    IE.SOURCE_TRANSPORT_PORT: "src_port", IE.DESTINATION_TRANSPORT_PORT: "dst_port",
    IE.PROTOCOL_IDENTIFIER: "protocol", IE.TCP_CONTROL_BITS: "tcp_flags",
    IE.PACKET_DELTA_COUNT: "packets", IE.OCTET_DELTA_COUNT: "bytes",
    IE.INGRESS_INTERFACE: "in_if", IE.EGRESS_INTERFACE: "out_if",
    IE.BGP_SOURCE_AS_NUMBER: "src_as", IE.BGP_DESTINATION_AS_NUMBER: "dst_as",
}


def _fields(protocol: str, v6: bool) -> list[tuple[int, int, str]]:
    width = 16 if v6 else 4
    src = IE.SOURCE_IPV6_ADDRESS if v6 else IE.SOURCE_IPV4_ADDRESS
    dst = IE.DESTINATION_IPV6_ADDRESS if v6 else IE.DESTINATION_IPV4_ADDRESS
    if protocol == "ipfix":
        times = [(IE.FLOW_START_MILLISECONDS, 8, ">u8"), (IE.FLOW_END_MILLISECONDS, 8, ">u8")]
    else:
        times = [(IE.FLOW_START_SYS_UP_TIME, 4, ">u4"), (IE.FLOW_END_SYS_UP_TIME, 4, ">u4")]
    return [(src, width, f"({width},)u1"), (dst, width, f"({width},)u1"), *_COMMON, *times]


@dataclass
class _Domain:
    sequence: int = 0
    datagrams: int = 0
    rate: int = 1
    boot_ms: int | None = None


@dataclass
class Encoder:
    """Stateful per observation domain (sequence numbers, template refresh, v9 boot time)."""

    protocol: str = "ipfix"
    mtu: int = 1400
    refresh: int = 64
    _domains: dict[int, _Domain] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r}: use one of {', '.join(PROTOCOLS)}")
        if self.mtu < 200:
            raise ValueError(f"mtu {self.mtu}: must be at least 200 bytes")
        self._layouts = {
            v6: (_fields(self.protocol, v6),
                 np.dtype([(f"f{i}", t) for i, (_, _, t) in enumerate(_fields(self.protocol, v6))]))
            for v6 in (False, True)
        }

    def encode(self, batch: pa.RecordBatch | pa.Table) -> Iterator[tuple[bytes, int]]:
        """Datagrams for ``batch`` with the number of flow records in each."""
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        if table.num_rows == 0:
            return
        src = to_matrix(table.column("src_addr"))
        dst = to_matrix(table.column("dst_addr"))
        v6 = ~((src[:, :10] == 0).all(axis=1) & (src[:, 10] == 0xFF) & (src[:, 11] == 0xFF))
        domain_ids = table.column("source_id").to_numpy()
        rates = table.column("sampling_rate").to_numpy()
        starts = table.column("time_start").cast(pa.int64()).to_numpy() // 1000
        ends = table.column("time_end").cast(pa.int64()).to_numpy() // 1000
        values = {name: table.column(name).to_numpy() for name in _COLUMN.values()}
        for domain_id in np.unique(domain_ids):
            dom = self._domains.setdefault(int(domain_id), _Domain())
            in_domain = domain_ids == domain_id
            dom.rate = int(rates[in_domain][0])
            if dom.boot_ms is None:
                dom.boot_ms = int(starts[in_domain].min()) - _DAY_MS
            for family in (False, True):
                rows = np.flatnonzero(in_domain & (v6 == family))
                if len(rows):
                    yield from self._datagrams(dom, int(domain_id), family, rows, src, dst,
                                               starts, ends, values)

    def _datagrams(self, dom: _Domain, domain_id: int, v6: bool, rows: npt.NDArray[np.intp],
                   src: npt.NDArray[np.uint8], dst: npt.NDArray[np.uint8],
                   starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64],
                   values: dict[str, npt.NDArray[np.uint64]]) -> Iterator[tuple[bytes, int]]:
        fields_, dtype = self._layouts[v6]
        rec = np.zeros(len(rows), dtype=dtype)
        offset = 12 if not v6 else 0
        rec["f0"] = src[rows, offset:]
        rec["f1"] = dst[rows, offset:]
        for i, (element, _, _) in enumerate(fields_[2:-2], start=2):
            rec[f"f{i}"] = values[_COLUMN[IE(element)]][rows]
        s, e = starts[rows], ends[rows]
        n_f = len(fields_)
        assert dom.boot_ms is not None
        if self.protocol == "v9" and (s.min() - dom.boot_ms < 0
                                      or e.max() - dom.boot_ms > 0xFFFF_FFFF - 2 * _DAY_MS):
            dom.boot_ms = int(s.min()) - _DAY_MS  # the simulated router rebooted
        if self.protocol == "ipfix":
            rec[f"f{n_f - 2}"], rec[f"f{n_f - 1}"] = s, e
        else:
            rec[f"f{n_f - 2}"], rec[f"f{n_f - 1}"] = s - dom.boot_ms, e - dom.boot_ms
        raw = rec.tobytes()
        size = dtype.itemsize
        header = 20 if self.protocol == "v9" else 16
        per = max(1, (self.mtu - header - 4 - self._template_bytes()) // size)
        template_id = TEMPLATE_V6 if v6 else TEMPLATE_V4
        for first in range(0, len(rows), per):
            count = min(per, len(rows) - first)
            body = raw[first * size:(first + count) * size]
            export_ms = (int(e[first:first + count].max()) // 1000 + 1) * 1000
            with_templates = dom.datagrams % self.refresh == 0
            yield self._message(dom, domain_id, template_id, body, count, export_ms,
                                with_templates), count
            dom.datagrams += 1

    # -- wire format ------------------------------------------------------------------------

    def _template_bytes(self) -> int:
        return len(self._templates()) + 16  # plus the options data set

    def _templates(self) -> bytes:
        parts = []
        for v6, template_id in ((False, TEMPLATE_V4), (True, TEMPLATE_V6)):
            fields_ = self._layouts[v6][0]
            parts.append(struct.pack("!HH", template_id, len(fields_)))
            parts.extend(struct.pack("!HH", int(el), ln) for el, ln, _ in fields_)
        body = b"".join(parts)
        set_id = 0 if self.protocol == "v9" else 2
        if self.protocol == "ipfix":
            # Options template: scope observationDomainId; samplingPacketInterval and -Space.
            opt = struct.pack("!HHH", TEMPLATE_OPTIONS, 3, 1) + struct.pack(
                "!HHHHHH", _OBSERVATION_DOMAIN_ID, 4, IE.SAMPLING_PACKET_INTERVAL, 4,
                IE.SAMPLING_PACKET_SPACE, 4)
            return _set(set_id, body) + _set(3, opt)
        opt = struct.pack("!HHH", TEMPLATE_OPTIONS, 4, 8) + struct.pack(
            "!HHHHHH", _V9_SCOPE_SYSTEM, 4, IE.SAMPLING_INTERVAL, 4, IE.SAMPLING_ALGORITHM, 1)
        return _set(set_id, body) + _set(1, opt)

    def _message(self, dom: _Domain, domain_id: int, template_id: int, body: bytes, count: int,
                 export_ms: int, with_templates: bool) -> bytes:
        sets = []
        records = count
        data_records = count   # RFC 7011 §3.1: options data records are data records too
        if with_templates:
            sets.append(self._templates())
            if self.protocol == "ipfix":
                opt = struct.pack("!III", domain_id, 1, max(dom.rate - 1, 0))
            else:
                opt = struct.pack("!IIB", domain_id, dom.rate, 2)  # 2 = random 1:N
            sets.append(_set(TEMPLATE_OPTIONS, opt))
            records += 3
            data_records += 1
        sets.append(_set(template_id, body))
        payload = b"".join(sets)
        if self.protocol == "ipfix":
            header = struct.pack("!HHIII", 10, 16 + len(payload), export_ms // 1000,
                                 dom.sequence, domain_id)
            dom.sequence = (dom.sequence + data_records) & 0xFFFF_FFFF
        else:
            assert dom.boot_ms is not None
            header = struct.pack("!HHIIII", 9, records, export_ms - dom.boot_ms,
                                 export_ms // 1000, dom.sequence, domain_id)
            dom.sequence = (dom.sequence + 1) & 0xFFFF_FFFF
        return header + payload


def _set(set_id: int, body: bytes) -> bytes:
    """A v9 FlowSet or IPFIX Set, padded to a 4-byte boundary."""
    pad = -len(body) % 4
    return struct.pack("!HH", set_id, 4 + len(body) + pad) + body + bytes(pad)
