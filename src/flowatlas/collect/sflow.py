"""sFlow v5 flow samples to flow records (counter samples are skipped).

The datagram is walked sample by sample (sFlow nests variable-length structures, so finding
them is a walk), collecting each sampled packet header; the headers of a whole batch of
datagrams then go into one padded byte matrix and the Ethernet/VLAN/IPv4/IPv6/TCP/UDP parsing
is vectorised over all of them. Each sample becomes
one record: 1 packet of the frame's length at the sample's rate, timed at receipt (sFlow carries
no per-sample time), with the AS numbers of its extended gateway record if it has one. Unknown
sample and record formats are skipped by their length.

Loss at the agent is accounted per data source: the flow sample sequence number (one per sample
of that source) shows samples that never reached the collector, and the ``drops`` counter
samples the agent could not take for lack of resources.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from flowatlas.collect.columns import Columns
from flowatlas.collect.sequence import SequenceTracker, Unit

U32 = struct.Struct("!I")
PAIR = struct.Struct("!II")
AGENT = struct.Struct("!IIII")
FLOW = struct.Struct("!8I")
EXPANDED = struct.Struct("!11I")
RAW = struct.Struct("!4I")
PARSE_BYTES = 128
"""Header bytes kept per sample: Ethernet, two VLAN tags, IPv6 and a TCP header fit."""
MAX_SAMPLES = 4096

FLOW_SAMPLE, EXPANDED_FLOW_SAMPLE = 1, 3
RAW_HEADER, SAMPLED_IPV4, SAMPLED_IPV6 = 1, 3, 4
EXTENDED_GATEWAY = 1003
ADDRESS_BYTES = {0: 0, 1: 4, 2: 16}
"""sFlow address types (unknown, IPv4, IPv6) and the bytes that follow the type."""
SAMPLE_SEQUENCE, SAMPLE_DROPS = 0x5F01, 0x5F02
"""Third element of the tracker keys of a data source's sample sequence and drops counter,
apart from the datagram sequence keys (exporter, sub-agent, version or 0x5F)."""
HP_ETHERNET, HP_IPV4, HP_IPV6 = 1, 11, 12


class SFlowError(ValueError):
    pass


@dataclass
class SFlowSamples:
    """Flow samples found in one or more datagrams, before their headers are parsed."""

    headers: list[bytes] = field(default_factory=list)
    hproto: list[int] = field(default_factory=list)
    frame: list[int] = field(default_factory=list)
    rate: list[int] = field(default_factory=list)
    in_if: list[int] = field(default_factory=list)
    out_if: list[int] = field(default_factory=list)
    src_as: list[int] = field(default_factory=list)
    dst_as: list[int] = field(default_factory=list)
    received_us: list[int] = field(default_factory=list)
    runs: dict[int, tuple[list[int], list[int]]] = field(default_factory=dict)
    """Per data source (``sub_agent << 64 | source``): its flow samples' sequence numbers and
    drops counters in arrival order, for :func:`account`."""

    def __len__(self) -> int:
        return len(self.headers)

    def note(self, dg: SFlowDatagram) -> None:
        """Keep the sample numbers and drops of a walked datagram for :func:`account`."""
        for source, sample_seq, drops in dg.sources:
            seqs, drop_counts = self.runs.setdefault(dg.sub_agent << 64 | source, ([], []))
            seqs.append(sample_seq)
            drop_counts.append(drops)


@dataclass(frozen=True)
class SFlowDatagram:
    sub_agent: int
    sequence: int
    samples: int
    taken: int
    skipped: int
    """Samples that had no usable packet record."""
    sources: tuple[tuple[int, int, int], ...] = ()
    """(data source, sample sequence number, drops) of each flow sample; the source is
    ``source_id_type << 32 | source_id_index`` for compact and expanded samples alike."""
    bad_gateway: int = 0
    """Extended gateway records whose contents run past the record (AS numbers left 0)."""


def _u32(data: bytes, pos: int, end: int) -> int:
    if pos + 4 > end:
        raise SFlowError("truncated")
    return int(U32.unpack_from(data, pos)[0])


def walk(data: bytes, received_us: int, into: SFlowSamples) -> SFlowDatagram:
    """Append the datagram's flow samples to ``into`` (nothing is appended if it is malformed)."""
    try:
        return _walk(data, received_us, into)
    except struct.error as exc:
        raise SFlowError("truncated") from exc


def _walk(data: bytes, received_us: int, into: SFlowSamples) -> SFlowDatagram:
    end = len(data)
    addr_type = _u32(data, 4, end)
    if addr_type == 1:
        pos = 12
    elif addr_type == 2:
        pos = 24
    else:
        raise SFlowError("bad agent address type")
    if pos + 16 > end:
        raise SFlowError("truncated")
    sub_agent, seq, _uptime, nsamples = AGENT.unpack_from(data, pos)
    pos += 16
    if nsamples > MAX_SAMPLES:
        raise SFlowError("too many samples")
    found = SFlowSamples()
    skipped = bad_gateway = 0
    sources: list[tuple[int, int, int]] = []
    for fmt, body, stop in _tlvs(data, pos, end, nsamples, "sample runs past the datagram"):
        if fmt == FLOW_SAMPLE:
            if body + 32 > stop:
                raise SFlowError("truncated flow sample")
            sample_seq, source, r, _, drops, i, o, nrec = FLOW.unpack_from(data, body)
            source = (source >> 24) << 32 | (source & 0xFFFFFF)
            i, o = i & 0x3FFFFFFF, o & 0x3FFFFFFF
            # 0x3FFFFFFF is sFlow's "internal/unknown" interface; the schema's unknown is 0.
            i, o = (0 if i == 0x3FFFFFFF else i), (0 if o == 0x3FFFFFFF else o)
            rp = body + 32
        elif fmt == EXPANDED_FLOW_SAMPLE:
            if body + 44 > stop:
                raise SFlowError("truncated flow sample")
            sample_seq, stype, sindex, r, _, drops, _, i, _, o, nrec = \
                EXPANDED.unpack_from(data, body)
            source = stype << 32 | sindex
            rp = body + 44
        else:
            continue  # counter samples and unknown formats: skipped by length
        sources.append((source, sample_seq, drops))
        packet, asn = _records(data, rp, stop, nrec)
        if asn is None:
            bad_gateway += 1
            asn = (0, 0)
        if packet is None:
            skipped += 1
            continue
        found.headers.append(packet[0])
        found.hproto.append(packet[1])
        found.frame.append(packet[2])
        found.rate.append(r or 1)
        found.in_if.append(i)
        found.out_if.append(o)
        found.src_as.append(asn[0])
        found.dst_as.append(asn[1])
        found.received_us.append(received_us)
    for name in ("headers", "hproto", "frame", "rate", "in_if", "out_if", "src_as", "dst_as",
                 "received_us"):
        getattr(into, name).extend(getattr(found, name))
    return SFlowDatagram(sub_agent, seq, nsamples, len(found), skipped, tuple(sources),
                         bad_gateway)


def account(tracker: SequenceTracker, exporter: bytes,
            runs: dict[int, tuple[list[int], list[int]]]) -> tuple[int, int]:
    """Samples missing by each data source's sequence numbers, and the increase of its drops
    counter, over a batch's flow samples: (missing samples, drops).

    Both go through the sequence tracker, so wrap-around at 2**32, reordering and restarts are
    judged as for datagram sequence numbers. The sample number counts one per sample (PACKETS);
    the drops counter is observed as a number carrying nothing of its own (RECORDS, count 0),
    which makes every forward step its increase. A restart of the sample numbers starts the
    drops counter afresh too (an agent that restarted has reset both). The usual run (every
    sample numbered one on, drops only growing) is checked and summed with numpy; any other run
    goes sample by sample.
    """
    missing = dropped = 0
    for stream, (seq_list, drop_list) in runs.items():
        seq_key = (exporter, stream, SAMPLE_SEQUENCE)
        drops_key = (exporter, stream, SAMPLE_DROPS)
        seqs = np.asarray(seq_list, dtype=np.int64)
        drops = np.asarray(drop_list, dtype=np.int64)
        seq_steps = tracker.steps(seq_key, seqs)
        drop_steps = tracker.steps(drops_key, drops)
        if (seq_steps is not None and drop_steps is not None and bool((seq_steps == 1).all())
                and bool((drop_steps <= tracker.max_gap).all())):
            tracker.advance(seq_key, seq_list[-1], 1)
            tracker.advance(drops_key, drop_list[-1], 0)
            dropped += int(drop_steps.sum())
            continue
        for sample_seq, count in zip(seq_list, drop_list, strict=True):
            step = tracker.observe(seq_key, sample_seq, 1, Unit.PACKETS)
            missing += step.lost
            if step.restarted:
                tracker.forget(drops_key)
            dropped += tracker.observe(drops_key, count, 0, Unit.RECORDS).lost
    return missing, dropped


def columns(samples: SFlowSamples) -> Columns:
    """Parse every collected header at once into canonical columns."""
    n = len(samples)
    hlen = np.fromiter((len(h) for h in samples.headers), dtype=np.int64, count=n)
    padded = b"".join(h.ljust(PARSE_BYTES, b"\0") for h in samples.headers)
    headers = np.frombuffer(padded, dtype=np.uint8).reshape(n, PARSE_BYTES)
    cols = _parse_headers(headers, hlen, np.asarray(samples.hproto, dtype=np.int64))
    cols.update({
        "time_start": np.asarray(samples.received_us, dtype=np.int64),
        "packets": np.ones(n, dtype=np.uint64),
        "bytes": np.asarray(samples.frame, dtype=np.uint64),
        "sampling_rate": np.asarray(samples.rate, dtype=np.uint32),
        "in_if": np.asarray(samples.in_if, dtype=np.uint32),
        "out_if": np.asarray(samples.out_if, dtype=np.uint32),
        "src_as": np.asarray(samples.src_as, dtype=np.uint32),
        "dst_as": np.asarray(samples.dst_as, dtype=np.uint32),
    })
    return cols


Packet = tuple[bytes, int, int]
"""A sample's packet record: header bytes, header protocol, frame length."""


def _records(data: bytes, pos: int, end: int,
             nrec: int) -> tuple[Packet | None, tuple[int, int] | None]:
    """The sample's first packet record (None: none) and (src AS, dst AS) from its first
    extended gateway record ((0, 0) without one; None when that record is malformed)."""
    packet: Packet | None = None
    asn: tuple[int, int] | None = (0, 0)
    gateway = False
    for fmt, body, stop in _tlvs(data, pos, end, min(nrec, 64), "record runs past its sample"):
        if fmt == EXTENDED_GATEWAY and not gateway:
            gateway = True
            asn = _gateway(data, body, stop)
        elif packet is not None:
            continue
        elif fmt == RAW_HEADER:
            if body + 16 > stop:
                raise SFlowError("truncated raw header record")
            proto, frame_len, _stripped, size = RAW.unpack_from(data, body)
            size = min(size, stop - body - 16, PARSE_BYTES)
            packet = (data[body + 16:body + 16 + size], proto, frame_len)
        elif fmt in (SAMPLED_IPV4, SAMPLED_IPV6):
            packet = (*_synthesise(data, body, stop, fmt), _u32(data, body, stop))
        if gateway and packet is not None:
            break  # the rest of the sample's records carry nothing flowatlas stores
    return packet, asn


def _gateway(data: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """(src_as, dst_as) of an extended gateway record, None if it runs past its end.

    src_as is the record's src_as as sent (the router's own AS is not put in for 0, as
    sflowtool and pmacct do not); dst_as is the last AS of the last dst_as_path segment, the
    origin AS (0 for an empty path or an empty last segment, as in sflowtool).
    """
    if pos + 4 > end:
        return None
    alen = ADDRESS_BYTES.get(int(U32.unpack_from(data, pos)[0]))
    if alen is None:
        return None
    pos += 4 + alen
    if pos + 16 > end:
        return None
    _router_as, src_as, _src_peer_as, segments = AGENT.unpack_from(data, pos)
    pos += 16
    if segments * 8 > end - pos:  # bounds the loop by the record's size
        return None
    dst_as = 0
    for _ in range(segments):
        if pos + 8 > end:
            return None
        _kind, count = PAIR.unpack_from(data, pos)
        pos += 8 + 4 * count
        if pos > end:
            return None
        dst_as = int(U32.unpack_from(data, pos - 4)[0]) if count else 0
    if pos + 4 > end:
        return None
    communities = int(U32.unpack_from(data, pos)[0])
    if communities * 4 + 8 > end - pos:  # the communities and localpref
        return None
    return int(src_as), dst_as


def _tlvs(data: bytes, pos: int, end: int, count: int,
          overrun: str) -> Iterator[tuple[int, int, int]]:
    """sFlow's (format, length, body) structures: yields (format, body start, body end)."""
    for _ in range(count):
        if pos + 8 > end:
            raise SFlowError("truncated")
        fmt, length = PAIR.unpack_from(data, pos)
        body, pos = pos + 8, pos + 8 + length
        if pos > end:
            raise SFlowError(overrun)
        yield fmt, body, pos


def _synthesise(data: bytes, body: int, end: int, fmt: int) -> tuple[bytes, int]:
    """Rewrite a sampled IPv4/IPv6 record as a minimal IP + L4 header so one parser serves;
    returns the header and its header protocol."""
    alen = 4 if fmt == SAMPLED_IPV4 else 16
    need = 8 + 2 * alen + 16
    if body + need > end:
        raise SFlowError("truncated sampled IP record")
    proto = _u32(data, body + 4, end)
    src = data[body + 8:body + 8 + alen]
    dst = data[body + 8 + alen:body + 8 + 2 * alen]
    sport, dport, flags = (_u32(data, body + 8 + 2 * alen + k, end) for k in (0, 4, 8))
    l4 = struct.pack("!HH", sport & 0xFFFF, dport & 0xFFFF) + bytes(9) + bytes([flags & 0xFF])
    if fmt == SAMPLED_IPV4:
        return bytes([0x45]) + bytes(8) + bytes([proto & 0xFF]) + bytes(2) + src + dst + l4, \
            HP_IPV4
    return bytes([0x60]) + bytes(5) + bytes([proto & 0xFF]) + bytes(1) + src + dst + l4, HP_IPV6


def _gather(h: npt.NDArray[np.uint8], at: npt.NDArray[np.int64], width: int) -> npt.NDArray[Any]:
    idx = np.clip(at[:, None] + np.arange(width), 0, h.shape[1] - 1)
    return np.take_along_axis(h, idx, axis=1)


def _be(cols: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    out = np.zeros(cols.shape[0], dtype=np.uint64)
    for j in range(cols.shape[1]):
        out = (out << np.uint64(8)) | cols[:, j].astype(np.uint64)
    return out


def _parse_headers(h: npt.NDArray[np.uint8], hlen: npt.NDArray[np.int64],
                   hproto: npt.NDArray[np.int64]) -> Columns:
    n = h.shape[0]
    l3 = np.zeros(n, dtype=np.int64)
    ethertype = np.where(hproto == HP_IPV4, 0x0800, np.where(hproto == HP_IPV6, 0x86DD, 0))
    eth = hproto == HP_ETHERNET
    l3[eth] = 14
    et = _be(_gather(h, np.full(n, 12), 2)).astype(np.int64)
    for _ in range(2):  # 802.1Q and QinQ tags
        tagged = eth & np.isin(et, (0x8100, 0x88A8, 0x9100))
        l3 = np.where(tagged, l3 + 4, l3)
        et = np.where(tagged, _be(_gather(h, l3 - 2, 2)).astype(np.int64), et)
    ethertype = np.where(eth, et, ethertype)
    v4 = (ethertype == 0x0800) & (hlen >= l3 + 20)
    v6 = (ethertype == 0x86DD) & (hlen >= l3 + 40)
    src = np.zeros((n, 16), dtype=np.uint8)
    dst = np.zeros((n, 16), dtype=np.uint8)
    src[v4, 10:12] = 0xFF
    dst[v4, 10:12] = 0xFF
    src[v4, 12:] = _gather(h, l3 + 12, 4)[v4]
    dst[v4, 12:] = _gather(h, l3 + 16, 4)[v4]
    src[v6] = _gather(h, l3 + 8, 16)[v6]
    dst[v6] = _gather(h, l3 + 24, 16)[v6]
    proto = np.zeros(n, dtype=np.uint8)
    proto[v4] = _gather(h, l3 + 9, 1)[v4, 0]
    proto[v6] = _gather(h, l3 + 6, 1)[v6, 0]
    ihl = (_gather(h, l3, 1)[:, 0] & 0x0F).astype(np.int64) * 4
    frag = _be(_gather(h, l3 + 6, 2)) & np.uint64(0x1FFF)
    l4 = np.where(v4, l3 + ihl, l3 + 40)
    ported = (v4 & (frag == 0) | v6) & np.isin(proto, (6, 17, 132)) & (hlen >= l4 + 4)
    sport = np.where(ported, _be(_gather(h, l4, 2)), 0).astype(np.uint16)
    dport = np.where(ported, _be(_gather(h, l4 + 2, 2)), 0).astype(np.uint16)
    tcp = ported & (proto == 6) & (hlen >= l4 + 14)
    flags = np.where(tcp, _gather(h, l4 + 13, 1)[:, 0], 0).astype(np.uint8)
    return {"src_addr": src, "dst_addr": dst, "protocol": proto, "src_port": sport,
            "dst_port": dport, "tcp_flags": flags}
