"""Background internet traffic: heavy-tailed hosts and flow sizes, common services, scanners.

Clients (eyeball and enterprise hosts) and servers (CDN first, then hosting) are ranked by
popularity and picked by a truncated Zipf law, so a few CDN endpoints get a huge fan-in. Packets
per flow follow a Lomax (Pareto II) law per service; half the conversations also show the reply
direction, since NetFlow records are one-way. Everything is drawn for a whole chunk at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from flowatlas.simulate.config import MS, STREAM_BACKGROUND, SimConfig, stream_rng
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
)
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


def _zipf_table(count: int, s: float) -> npt.NDArray[np.int64]:
    """Inverse CDF of a discrete Zipf law over ``count`` ranks at 2^14 + 1 quantiles.

    Drawing is a lookup in a cache-sized table plus a linear step inside the cell (so rare
    ranks between grid points stay reachable) instead of a power per flow.
    """
    weights = np.arange(1, count + 1, dtype=np.float64) ** -s
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    grid = np.arange((1 << _TABLE_BITS) + 1) / (1 << _TABLE_BITS)
    return np.minimum(np.searchsorted(cdf, grid), count - 1).astype(np.int64)


def _draw(table: npt.NDArray[np.int64], u20: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """Ranks from 20 random bits: 14 pick the cell, 6 the place inside it."""
    cell = (u20 >> np.uint64(6)).astype(np.intp)
    lo = table[cell]
    width = table[cell + 1] - lo
    return lo + ((u20 & np.uint64(63)).astype(np.int64) * width >> 6)


def _family_hosts(world: World, classes: tuple[int, ...], v6: bool) -> tuple[
        npt.NDArray[np.void], npt.NDArray[np.uint32]]:
    addrs, asns = [], []
    for c in classes:
        pool = world.pools[c]
        is6 = is_v6(pool.addr)
        addrs.append(pool.addr[is6 == v6])
        asns.append(pool.asn[is6 == v6])
    return np.concatenate(addrs), np.concatenate(asns)


class Background:
    """Generates chunk ``c`` of the background from (seed, c) alone.

    All hosts sit in one array (clients v4, clients v6, servers v4, servers v6, scanners); a flow
    is first a pair of host indices, swapped for replies, then gathered once into addresses.
    """

    def __init__(self, world: World, config: SimConfig, timeline: Timeline) -> None:
        self.world = world
        self.config = config
        self.timeline = timeline
        parts = [
            _family_hosts(world, (RESIDENTIAL, ENTERPRISE), False),
            _family_hosts(world, (RESIDENTIAL, ENTERPRISE), True),
            _family_hosts(world, (CDN, HOSTING), False),  # CDN first: the most popular servers
            _family_hosts(world, (CDN, HOSTING), True),
            (world.scanners.addr, world.scanners.asn),
        ]
        sizes = [len(a) for _, a in parts]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.hosts = np.concatenate([a for a, _ in parts])
        self.host_asn = np.concatenate([a for _, a in parts])
        # Rank tables per family, already shifted to indices into ``hosts``.
        self.client_table = [offsets[i] + _zipf_table(sizes[i], CLIENT_ZIPF) for i in (0, 1)]
        self.server_table = [offsets[i] + _zipf_table(sizes[i], SERVER_ZIPF) for i in (2, 3)]
        self.resolver_table = [offsets[i] + _zipf_table(min(_RESOLVERS, sizes[i]), 1.0)
                               for i in (2, 3)]
        self.scanner_table = offsets[4] + _zipf_table(sizes[4], 1.0)
        # Scanners sweep IPv4 only: clients v4 [o0, o1) and servers v4 [o2, o3).
        self.scan_targets = (int(offsets[1] - offsets[0]), int(offsets[2] - offsets[1]),
                             int(offsets[1] - offsets[0] + offsets[3] - offsets[2]))
        shares = np.array([s.share for s in SERVICES])
        cum = np.cumsum(shares / shares.sum())
        self.service_table = np.searchsorted(
            cum, (np.arange(1 << 12) + 0.5) / (1 << 12), side="right").astype(np.int8)
        self.min_packets = np.array([s.min_packets for s in SERVICES])
        self.inv_alpha = 1.0 / np.array([s.alpha for s in SERVICES])
        self.packet_size = np.array([s.packet_size for s in SERVICES], dtype=np.float64)
        self.protocol = np.array([s.protocol for s in SERVICES], dtype=np.uint8)
        self.resolver = np.array([s.resolvers for s in SERVICES])
        ports = np.zeros((len(SERVICES), 4), dtype=np.int64)
        for i, s in enumerate(SERVICES):
            ports[i] = [s.ports[j % len(s.ports)] for j in range(4)]
        self.ports = ports

    def chunks(self) -> int:
        return max(1, -(-self.config.flows // self.config.chunk_rows))

    def rows(self, index: int) -> int:
        k, n = self.chunks(), self.config.flows
        return n * (index + 1) // k - n * index // k

    def bounds(self, index: int) -> tuple[int, int]:
        """The time slice [start, end) of chunk ``index``."""
        k = self.chunks()
        lo = int(self.timeline.at(np.array([index / k]))[0])
        hi = int(self.timeline.at(np.array([(index + 1) / k]))[0])
        return lo, hi if index + 1 < k else self.timeline.end_us + 1

    def chunk(self, index: int) -> Columns:
        rng = stream_rng(self.config.seed, STREAM_BACKGROUND, index)
        n = self.rows(index)
        k = self.chunks()
        cols = empty(n)
        if n == 0:
            return cols
        start = self.timeline.at(self.timeline.sorted_quantiles(rng, n, index / k, (index + 1) / k))
        # Two raw 64-bit words per flow, cut into the small independent choices below.
        a = rng.bit_generator.random_raw(n)
        b = rng.bit_generator.random_raw(n)
        service = self.service_table[(a & 0xFFF).astype(np.intp)].astype(np.intp)
        scan = ((a >> 12) & 0xFFFF) < int(SCAN_SHARE * 65536)
        v6 = (((a >> 28) & 0xFFFF) < int(V6_SHARE * 65536)) & ~scan
        reply = ((a >> 44) & 1).astype(bool)
        port_pick = ((a >> 45) & 3).astype(np.intp)
        ephemeral = (32768 + ((a >> 47) & 0x3FFF)).astype(np.uint16)
        other_port = (1024 + ((a >> 47) & 0x7FFF)).astype(np.uint16)
        cu = b & np.uint64(0xFFFFF)
        su = (b >> np.uint64(20)) & np.uint64(0xFFFFF)
        size_u = ((b >> 40) & 0xFFFF) * (0.8 / 65536) + 0.6
        client = _draw(self.client_table[0], cu)
        server = _draw(self.server_table[0], su)
        six = np.flatnonzero(v6)
        client[six] = _draw(self.client_table[1], cu[six])
        server[six] = _draw(self.server_table[1], su[six])
        resolver = np.flatnonzero(self.resolver[service])
        server[resolver] = _draw(self.resolver_table[0], su[resolver])
        six = resolver[v6[resolver]]
        server[six] = _draw(self.resolver_table[1], su[six])
        # Packets per flow: Lomax tail per service (exp(E/alpha) is a Pareto draw >= 1).
        e = rng.standard_exponential(n)
        packets = np.maximum(
            np.minimum(self.min_packets[service] * np.exp(e * self.inv_alpha[service]), 5e6), 1.0
        ).astype(np.uint64)
        size = self.packet_size[service]
        size = np.where(reply, size, np.minimum(size, 240.0)) * size_u
        nbytes = (packets * np.clip(size, 40.0, 1500.0)).astype(np.uint64)
        duration = np.where(
            packets > 1,
            np.minimum(packets * rng.standard_exponential(n) * 15.0, ACTIVE_TIMEOUT_MS), 0.0,
        ).astype(np.int64) * MS
        protocol = self.protocol[service]
        port = self.ports[service, port_pick].astype(np.uint16)
        port = np.where(port == 0, other_port, port)
        flags = np.where(protocol == TCP, TCP_FULL, 0).astype(np.uint8)
        short_tcp = (protocol == TCP) & (packets <= 2)
        flags[short_tcp] = np.where(reply[short_tcp], SYN | ACK, SYN | ACK | PSH | FIN)
        # Internet-wide scanners: one SYN to anything (IPv4), rarely answered by a RST.
        srows = np.flatnonzero(scan)
        if len(srows):
            m = len(srows)
            client[srows] = _draw(self.scanner_table, (b[srows] >> np.uint64(44)))
            n_c4, gap, total = self.scan_targets
            target = (b[srows] % np.uint64(total)).astype(np.int64)
            server[srows] = target + np.where(target >= n_c4, gap, 0)
            port[srows] = SCAN_PORTS[(b[srows] >> 20) % np.uint64(len(SCAN_PORTS))]
            protocol[srows] = TCP
            packets[srows] = 1
            nbytes[srows] = 40 + 4 * ((b[srows] >> 30) & 3)
            duration[srows] = 0
            flags[srows] = SYN
            answered = ((b[srows] >> 33) & 15) == 0
            reply[srows] = answered
            flags[srows[answered]] = SYN | ACK | RST
            del m
        src = np.where(reply, server, client)
        dst = np.where(reply, client, server)
        cols["time_start"] = start
        cols["time_end"] = np.minimum(start + duration, self.timeline.end_us - MS)
        cols["src_addr"] = self.hosts[src]
        cols["dst_addr"] = self.hosts[dst]
        cols["src_as"] = self.host_asn[src]
        cols["dst_as"] = self.host_asn[dst]
        cols["src_port"] = np.where(reply, port, ephemeral)
        cols["dst_port"] = np.where(reply, ephemeral, port)
        cols["protocol"] = protocol
        cols["tcp_flags"] = flags
        cols["packets"] = packets
        cols["bytes"] = nbytes
        return cols
