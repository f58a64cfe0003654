"""Background internet traffic: heavy-tailed hosts and flow sizes, common services, scanners.

Clients (eyeball and enterprise hosts) and servers (CDN first, then hosting) are ranked by
popularity and picked by a truncated Zipf law, so a few CDN endpoints get a huge fan-in. Packets
per flow follow a Lomax (Pareto II) law per service; half the conversations also show the reply
direction, since NetFlow records are one-way. Everything is drawn for a whole chunk at once.

This is the simulator's hot path: four random 32-bit words per flow are cut into the small
choices; hosts are drawn first and the partners' view of the AS pair (one table lookup) drops
unobserved flows before anything else is computed; per-service parameters come from small tables
indexed by (service, port choice, direction); columns are written in place into the chunk's
final arrays, which Arrow then wraps without a copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from flowatlas.simulate.config import (
    DAY_US,
    MS,
    STREAM_BACKGROUND,
    STREAM_OBSERVE,
    SimConfig,
    stream_rng,
)
from flowatlas.simulate.flows import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    TCP,
    TCP_FULL,
    UDP,
    Columns,
    empty,
    is_v6,
    size,
)
from flowatlas.simulate.observe import interface, path_codes, thin
from flowatlas.simulate.timeline import Timeline
from flowatlas.simulate.world import CDN, ENTERPRISE, HOSTING, RESIDENTIAL, World

CLIENT_ZIPF = 0.9
SERVER_ZIPF = 1.2
V6_SHARE = 0.15
ACTIVE_TIMEOUT_MS = 300_000


@dataclass(frozen=True)
class Service:
    name: str
    share: float
    protocol: int
    ports: tuple[int, ...]
    min_packets: float
    alpha: float  # Lomax tail index of packets per flow; smaller is heavier
    packet_size: int  # mean bytes per packet on the server-to-client side
    resolvers: bool = False  # served by a few popular hosts (DNS, NTP)


SERVICES = (
    Service("https", 0.40, TCP, (443,), 4, 1.1, 1100),
    Service("http", 0.07, TCP, (80, 8080), 4, 1.2, 1000),
    Service("quic", 0.10, UDP, (443,), 4, 1.1, 1200),
    Service("dns", 0.14, UDP, (53,), 1, 6.0, 160, resolvers=True),
    Service("ntp", 0.03, UDP, (123,), 1, 50.0, 76, resolvers=True),
    Service("mail", 0.04, TCP, (25, 587, 993), 8, 1.3, 700),
    Service("ssh", 0.03, TCP, (22,), 10, 1.0, 300),
    Service("other-tcp", 0.05, TCP, (0,), 3, 1.3, 600),
    Service("other-udp", 0.10, UDP, (0,), 2, 1.3, 500),
)
SCAN_SHARE = 0.04
SCAN_PORTS = np.array([22, 23, 80, 443, 445, 1433, 3306, 3389, 5900, 6379, 8080, 8443],
                      dtype=np.uint16)
_RESOLVERS = 256


_TABLE_BITS = 14
_CELLS = 1 << _TABLE_BITS
_FRAC_BITS = 12  # place inside a cell: width (< 2^20 hosts) times this fits in 32 bits
_SCAN_T = round(SCAN_SHARE * 4096)
_V6_T = round(V6_SHARE * 4096)
_NO_PATH = -1
_T = TypeVar("_T", bound=np.generic)


def _zipf_table(count: int, s: float) -> npt.NDArray[np.int64]:
    """Inverse CDF of a discrete Zipf law over ``count`` ranks at 2^14 + 1 quantiles.

    Drawing is a lookup in a cache-sized table plus a linear step inside the cell (so rare
    ranks between grid points stay reachable) instead of a power per flow.
    """
    weights = np.arange(1, count + 1, dtype=np.float64) ** -s
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    grid = np.arange(_CELLS + 1) / _CELLS
    return np.minimum(np.searchsorted(cdf, grid), count - 1).astype(np.int64)


def _uniform_table(count: int) -> npt.NDArray[np.int64]:
    return (np.arange(_CELLS + 1, dtype=np.int64) * count) >> _TABLE_BITS


class _Ranks:
    """Several rank tables stacked by kind: ``draw(kind, u)`` picks from table ``kind``."""

    def __init__(self, tables: list[npt.NDArray[np.int64]]) -> None:
        t = np.stack(tables)
        self.lo = t[:, :-1].astype(np.uint32).reshape(-1)
        self.width = np.diff(t, axis=1).astype(np.uint32).reshape(-1)

    def draw(self, kind: npt.NDArray[np.uint8],
             u: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
        """Ranks from 26 random bits of ``u``: 14 pick the cell, 12 the place inside it."""
        cell = kind.astype(np.uint32)
        cell <<= _TABLE_BITS
        cell |= u >> np.uint32(32 - _TABLE_BITS)
        idx = cell.astype(np.intp)
        out = self.lo[idx]
        frac = u >> np.uint32(32 - _TABLE_BITS - _FRAC_BITS)
        frac &= np.uint32((1 << _FRAC_BITS) - 1)
        frac *= self.width[idx]
        frac >>= np.uint32(_FRAC_BITS)
        out += frac
        return out


def _family_hosts(world: World, classes: tuple[int, ...], v6: bool) -> tuple[
        npt.NDArray[np.void], npt.NDArray[np.uint32]]:
    addrs, asns = [], []
    for c in classes:
        pool = world.pools[c]
        is6 = is_v6(pool.addr)
        addrs.append(pool.addr[is6 == v6])
        asns.append(pool.asn[is6 == v6])
    return np.concatenate(addrs), np.concatenate(asns)


def _service_tables() -> dict[str, npt.NDArray[np.generic]]:
    """Per (service, port choice, reply) parameters, index ``(service * 4 + pick) * 2 + reply``."""
    rows = [(s, s.ports[pick % len(s.ports)], reply)
            for s in SERVICES for pick in range(4) for reply in (0, 1)]
    tcp = np.array([s.protocol == TCP for s, _, _ in rows])
    reply = np.array([r for _, _, r in rows], dtype=bool)
    return {
        "port": np.array([p for _, p, _ in rows], dtype=np.uint16),
        "protocol": np.array([s.protocol for s, _, _ in rows], dtype=np.uint8),
        "min_packets": np.array([s.min_packets for s, _, _ in rows], dtype=np.float32),
        "inv_alpha": np.array([1.0 / s.alpha for s, _, _ in rows], dtype=np.float32),
        # Requests are small; replies carry the service's payload.
        "size": np.array([s.packet_size if r else min(s.packet_size, 240)
                          for s, _, r in rows], dtype=np.float32) * np.float32(0.8 / 64),
        "size_base": np.array([s.packet_size if r else min(s.packet_size, 240)
                               for s, _, r in rows], dtype=np.float32) * np.float32(0.6),
        "flags_long": np.where(tcp, TCP_FULL, 0).astype(np.uint8),
        # A TCP flow of one or two packets: the handshake and a quick close.
        "flags_short": np.where(tcp, np.where(reply, SYN | ACK, SYN | ACK | PSH | FIN), 0
                                ).astype(np.uint8),
    }


class Background:
    """Generates chunk ``c`` of the background from (seed, c) alone.

    All hosts sit in one array (clients v6, clients v4, servers v4, servers v6, scanners: the
    IPv4 hosts are contiguous, so scan targets are one range); a flow is first a pair of host
    indices, swapped for replies, then gathered once into addresses.

    Chunks never cross a UTC day, so each batch lands in one day of the store without a split;
    a day is cut into equal-quantile chunks of at most ``chunk_rows`` flows.
    """

    def __init__(self, world: World, config: SimConfig, timeline: Timeline) -> None:
        self.world = world
        self.config = config
        self.timeline = timeline
        parts = [
            _family_hosts(world, (RESIDENTIAL, ENTERPRISE), True),
            _family_hosts(world, (RESIDENTIAL, ENTERPRISE), False),
            _family_hosts(world, (CDN, HOSTING), False),  # CDN first: the most popular servers
            _family_hosts(world, (CDN, HOSTING), True),
            (world.scanners.addr, world.scanners.asn),
        ]
        sizes = [len(a) for _, a in parts]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.hosts = np.concatenate([a for a, _ in parts])
        self.host_asn = np.concatenate([a for _, a in parts]).astype(np.uint32)
        self.host_if = interface(self.host_asn)
        asns, self.host_as = np.unique(self.host_asn, return_inverse=True)
        self.host_as = self.host_as.astype(np.intp)
        self.n_as = len(asns)
        self.path = path_codes(world, asns).reshape(-1)
        # Scanners sweep IPv4 only: clients v4 and servers v4, contiguous in ``hosts``.
        targets = offsets[1] + _uniform_table(int(offsets[3] - offsets[1]))
        scanners = offsets[4] + _zipf_table(sizes[4], 1.0)
        # Client kind = v6 | scan << 1; server kind = v6 | resolver << 1 | scan << 2.
        self.clients = _Ranks([offsets[1] + _zipf_table(sizes[1], CLIENT_ZIPF),
                               offsets[0] + _zipf_table(sizes[0], CLIENT_ZIPF),
                               scanners, scanners])
        self.servers = _Ranks([offsets[2] + _zipf_table(sizes[2], SERVER_ZIPF),
                               offsets[3] + _zipf_table(sizes[3], SERVER_ZIPF),
                               offsets[2] + _zipf_table(min(_RESOLVERS, sizes[2]), 1.0),
                               offsets[3] + _zipf_table(min(_RESOLVERS, sizes[3]), 1.0),
                               targets, targets, targets, targets])
        shares = np.array([s.share for s in SERVICES])
        cum = np.cumsum(shares / shares.sum())
        self.service_of = np.searchsorted(
            cum, (np.arange(1 << 12) + 0.5) / (1 << 12), side="right").astype(np.uint8)
        resolver = np.array([s.resolvers for s in SERVICES], dtype=np.uint8)
        self.resolver_of = resolver[self.service_of] << np.uint8(1)
        self.svc = _service_tables()
        self._plan()

    def _plan(self) -> None:
        """Chunk boundaries: UTC days, each cut into equal-quantile parts of <= chunk_rows."""
        tl, n = self.timeline, self.config.flows
        day0 = (tl.start_us // DAY_US + 1) * DAY_US
        cuts = np.array([tl.start_us, *range(day0, tl.end_us, DAY_US), tl.end_us], dtype=np.int64)
        q = tl.quantile_of(cuts)
        q[0], q[-1] = 0.0, 1.0
        quantiles, times = [0.0], [tl.start_us]
        for i in range(len(cuts) - 1):
            parts = max(1, -(-int(n * (q[i + 1] - q[i])) // self.config.chunk_rows))
            inner = q[i] + (q[i + 1] - q[i]) * np.arange(1, parts) / parts
            quantiles += [*inner.tolist(), float(q[i + 1])]
            inner_t = np.clip(tl.at(inner), cuts[i] + MS, cuts[i + 1] - MS)
            times += [*inner_t.tolist(), int(cuts[i + 1])]
        self._q = quantiles
        self._t = times
        self._first = [int(n * x) for x in quantiles]
        self._first[-1] = n

    def chunks(self) -> int:
        return len(self._q) - 1

    def rows(self, index: int) -> int:
        """Background flows of chunk ``index`` before observation."""
        return int(self._first[index + 1]) - int(self._first[index])

    def bounds(self, index: int) -> tuple[int, int]:
        """The time slice [start, end) of chunk ``index``."""
        last = index + 1 == self.chunks()
        return int(self._t[index]), self.timeline.end_us + 1 if last else int(self._t[index + 1])

    def chunk(self, index: int, planted: Columns | None = None) -> Columns:
        """The observed rows of chunk ``index``, as recorded by the exporters, then ``planted``."""
        rng = stream_rng(self.config.seed, STREAM_BACKGROUND, index)
        n = self.rows(index)
        w0, w1, w2, w3 = rng.bit_generator.random_raw(2 * n).view(np.uint32).reshape(4, n)
        # w0, w1: client and server ranks; w2: service 12 | scan 12 | size 6 | port pick 2;
        # w3: family 12 (the scan port for scans) | ephemeral port 15 | reply 1 | answered 4.
        scan = ((w2 >> np.uint32(12)) & np.uint32(0xFFF)) < _SCAN_T
        v6 = (w3 & np.uint32(0xFFF)) < _V6_T
        v6 &= ~scan
        ckind = scan.view(np.uint8) << np.uint8(1)
        ckind |= v6.view(np.uint8)
        client = self.clients.draw(ckind, w0)
        skind = self.resolver_of[w2 & np.uint32(0xFFF)]
        skind |= scan.view(np.uint8) << np.uint8(2)
        skind |= v6.view(np.uint8)
        server = self.servers.draw(skind, w1)
        # What the partners see: one lookup per flow by the (client AS, server AS) pair.
        pair = self.host_as[client]
        pair *= self.n_as
        pair += self.host_as[server]
        code = self.path[pair]
        keep = np.flatnonzero(code != _NO_PATH)
        client, server, code, w2, w3 = client[keep], server[keep], code[keep], w2[keep], w3[keep]
        del keep, pair, scan, v6, ckind, skind
        return self._observed(index, rng, client, server, code.astype(np.intp), w2, w3, planted)

    def _observed(self, index: int, rng: np.random.Generator, client: npt.NDArray[np.uint32],
                  server: npt.NDArray[np.uint32], code: npt.NDArray[np.intp],
                  w2: npt.NDArray[np.uint32], w3: npt.NDArray[np.uint32],
                  planted: Columns | None) -> Columns:
        t = self.svc
        m = len(code)
        scan = ((w2 >> np.uint32(12)) & np.uint32(0xFFF)) < _SCAN_T
        srows = np.flatnonzero(scan)
        answered = (w3[srows] >> np.uint32(28)) == 0
        reply = ((w3 >> np.uint32(27)) & np.uint32(1)).astype(bool)
        reply[srows] = answered
        svc = self.service_of[w2 & np.uint32(0xFFF)].astype(np.intp)
        svc *= 4
        svc += w2 >> np.uint32(30)
        svc *= 2
        svc += reply
        # Packets per flow: Lomax tail per service (exp(E/alpha) is a Pareto draw >= 1).
        pk = rng.standard_exponential(m, dtype=np.float32)
        pk *= t["inv_alpha"][svc]
        np.exp(pk, out=pk)
        pk *= t["min_packets"][svc]
        np.minimum(pk, np.float32(5e6), out=pk)
        pk[srows] = 1.0
        dur = rng.standard_exponential(m, dtype=np.float32)
        dur *= pk
        dur *= np.float32(15.0)
        np.minimum(dur, np.float32(ACTIVE_TIMEOUT_MS), out=dur)
        dur[pk < 2] = 0.0
        packets = pk.astype(np.uint64)
        sel: npt.NDArray[np.intp] | None = None
        if (self.world.exporter_rate > 1).any():
            obs = stream_rng(self.config.seed, STREAM_OBSERVE, index)
            thinned = thin(packets, self.world.exporter_rate[code], obs)
            assert thinned is not None
            sel = np.flatnonzero(thinned > 0)
            packets = thinned[sel]

        def final(a: npt.NDArray[_T]) -> npt.NDArray[_T]:
            return a if sel is None else a[sel]

        k = len(packets)
        extra = 0 if planted is None else size(planted)
        cols = empty(k + extra, zeroed=False)
        lo, hi = self.bounds(index)
        self.timeline.sorted_times(rng, cols["time_start"][:k], self._q[index],
                                   self._q[index + 1], lo, min(hi, self.timeline.end_us))
        end = cols["time_end"][:k]
        np.copyto(end, final(dur), casting="unsafe")
        end *= MS
        end += cols["time_start"][:k]
        np.minimum(end, self.timeline.end_us - MS, out=end)
        cols["packets"][:k] = packets
        # Bytes: packets times a per-packet size, 0.6..1.4 of the service's mean, 40..1500.
        each = ((w2 >> np.uint32(24)) & np.uint32(63)).astype(np.float32)
        each *= t["size"][svc]
        each += t["size_base"][svc]
        np.clip(each, np.float32(40.0), np.float32(1500.0), out=each)
        each16 = each.astype(np.uint16)
        each16[srows] = 40 + 4 * ((w2[srows] >> np.uint32(24)) & np.uint32(3))
        np.multiply(cols["packets"][:k], final(each16), out=cols["bytes"][:k])
        protocol = t["protocol"][svc]
        protocol[srows] = TCP
        cols["protocol"][:k] = final(protocol)
        flags = np.where(pk < 3, t["flags_short"][svc], t["flags_long"][svc])
        flags[srows] = np.where(answered, SYN | ACK | RST, SYN)
        cols["tcp_flags"][:k] = final(flags)
        # Ports: the service's, a high one for "other" services, an ephemeral client port.
        port = t["port"][svc]
        high = ((w3 >> np.uint32(12)) & np.uint32(0x7FFF)).astype(np.uint16)
        np.copyto(port, high + np.uint16(1024), where=port == 0)
        port[srows] = SCAN_PORTS[(w3[srows] & np.uint32(0xFFF)) % len(SCAN_PORTS)]
        high &= np.uint16(0x3FFF)
        high += np.uint16(32768)
        port, high, reply = final(port), final(high), final(reply)
        np.copyto(cols["src_port"][:k], np.where(reply, port, high))
        np.copyto(cols["dst_port"][:k], np.where(reply, high, port))
        src = np.where(reply, final(server), final(client))
        dst = np.where(reply, final(client), final(server))
        code = final(code)
        for col, table, index_ in (("src_addr", self.hosts, src), ("dst_addr", self.hosts, dst),
                                   ("src_as", self.host_asn, src), ("dst_as", self.host_asn, dst),
                                   ("in_if", self.host_if, src), ("out_if", self.host_if, dst),
                                   ("exporter", self.world.exporter_addr, code),
                                   ("sampling_rate", self.world.exporter_rate, code)):
            np.take(table, index_, out=cols[col][:k], mode="clip")  # "raise" buffers out
        np.copyto(cols["source_id"][:k], code, casting="unsafe")
        if planted is not None and extra:
            for name, out in cols.items():
                out[k:] = planted[name]
        return cols
