"""The simulated internet: autonomous systems, their prefixes by class, hosts, and exporters.

Prefixes never overlap (each IPv4 prefix sits in its own /16 slot, each IPv6 prefix under its own
top 32 bits). Background hosts take addresses from the lower half of a prefix and planted
scenario hosts from the upper half, so a planted C2 or relay is never also a background server.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from flowatlas.simulate.config import STREAM_WORLD, SimConfig, stream_rng
from flowatlas.simulate.flows import as_addr

CLASSES = ("residential", "hosting", "cdn", "enterprise")
RESIDENTIAL, HOSTING, CDN, ENTERPRISE = range(4)

# Share of ASes per class and IPv4 prefix lengths (inclusive range) per class.
_AS_SHARE = (0.40, 0.25, 0.05, 0.30)
_V4_LEN = ((16, 18), (19, 22), (20, 22), (22, 24))
_V6_LEN = (32, 40, 40, 48)
_V6_SHARE = (0.6, 0.5, 0.9, 0.2)
# Hosts per class in the background pools, before scaling by world size.
_HOSTS = (150_000, 20_000, 2_000, 30_000)
_V6_HOST_SHARE = 0.15
# First octets that are private, reserved or multicast: never used for simulated prefixes.
_RESERVED_V4 = {0, 10, 100, 127, 169, 172, 192, 198, 203, 224} | set(range(225, 256))

U8Matrix = npt.NDArray[np.uint8]
Addrs = npt.NDArray[np.void]
U32 = npt.NDArray[np.uint32]


@dataclass
class Prefixes:
    """One row per announced prefix (IPv4 and IPv6)."""

    text: list[str]
    cls: npt.NDArray[np.int8]
    asn: U32
    base: U8Matrix
    host_bits: npt.NDArray[np.int16]
    is_v6: npt.NDArray[np.bool_]


@dataclass
class HostPool:
    """Background hosts of one class, ranked by popularity (index 0 most popular)."""

    addr: Addrs
    asn: U32

    def __len__(self) -> int:
        return int(self.asn.shape[0])


@dataclass
class World:
    seed: int
    prefixes: Prefixes
    pools: dict[int, HostPool]
    exporter_addr: Addrs
    exporter_rate: U32
    observe_share: float
    scanners: HostPool
    _taken: set[bytes] = field(default_factory=set)

    def prefix_rows(self) -> list[tuple[str, str, int]]:
        """(prefix, class, asn) sorted by class then prefix text, as the truth files list them."""
        rows = [(t, CLASSES[c], int(a)) for t, c, a in
                zip(self.prefixes.text, self.prefixes.cls, self.prefixes.asn, strict=True)]
        return sorted(rows, key=lambda r: (r[1], r[2], r[0]))

    def allocate(self, rng: np.random.Generator, cls: int, n: int, *,
                 asn: int | None = None, v6_share: float = 0.0) -> tuple[Addrs, U32]:
        """``n`` fresh, distinct planted hosts from the upper half of prefixes of ``cls``."""
        p = self.prefixes
        mask = p.cls == cls
        if asn is not None:
            mask &= p.asn == asn
        v4_idx = np.flatnonzero(mask & ~p.is_v6)
        v6_idx = np.flatnonzero(mask & p.is_v6)
        out = np.zeros((n, 16), dtype=np.uint8)
        asns = np.zeros(n, dtype=np.uint32)
        i = 0
        while i < n:
            use_v6 = len(v6_idx) > 0 and rng.random() < v6_share
            k = int(rng.choice(v6_idx if use_v6 else v4_idx))
            addr = _host_in(p.base[k], int(p.host_bits[k]), rng.random(1), upper=True)[0]
            raw = addr.tobytes()
            if raw in self._taken:
                continue
            self._taken.add(raw)
            out[i] = addr
            asns[i] = p.asn[k]
            i += 1
        return as_addr(out), asns

    def asns_of(self, cls: int) -> U32:
        return np.unique(self.prefixes.asn[self.prefixes.cls == cls])

    def paths(self, src_as: U32, dst_as: U32) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.intp]]:
        """Whether the partner networks see the path between two ASes, and which exporter.

        Routing is taken as symmetric: both directions of a conversation meet the same exporter.
        """
        a = np.minimum(src_as, dst_as).astype(np.uint64)
        b = np.maximum(src_as, dst_as).astype(np.uint64)
        h = _mix64((a << np.uint64(32)) | b, self.seed)
        seen = (h & np.uint64(0xFFFF)) < np.uint64(int(self.observe_share * 65536))
        exporter = ((h >> np.uint64(16)) % np.uint64(len(self.exporter_rate))).astype(np.intp)
        return seen, exporter


def _mix64(x: npt.NDArray[np.uint64], seed: int) -> npt.NDArray[np.uint64]:
    """splitmix64 finaliser: a cheap, well-spread hash of 64-bit keys."""
    with np.errstate(over="ignore"):
        z = x + np.uint64((0x9E3779B97F4A7C15 * (seed + 1)) & 0xFFFFFFFFFFFFFFFF)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _host_in(base: U8Matrix, host_bits: int, u: npt.NDArray[np.float64],
             upper: bool) -> U8Matrix:
    """Addresses inside one prefix: ``u`` in [0, 1) picks the offset within a half of the prefix."""
    n = len(u)
    out = np.repeat(base[None, :], n, axis=0)
    usable = min(host_bits, 62) - 1  # half of the prefix; capped so it fits in int64
    offset = (u * float(2**usable - 2)).astype(np.int64) + 1
    if upper:
        offset += 2**usable
    shifted = offset.astype(">u8").view(np.uint8).reshape(n, 8)
    out[:, 8:] |= shifted
    return out


def build_world(config: SimConfig) -> World:
    rng = stream_rng(config.seed, STREAM_WORLD)
    scale = float(np.clip(config.flows / 5_000_000, 0.05, 1.0))
    n_as = int(60 + 340 * scale)
    classes = rng.choice(4, size=n_as, p=_AS_SHARE)
    classes[:4] = np.arange(4)  # every class exists, however small the world
    asns = rng.choice(np.arange(1_000, 400_000), size=n_as, replace=False).astype(np.uint32)
    slots = np.array([o for o in range(1, 224) if o not in _RESERVED_V4])
    v4_slots = (rng.permutation(len(slots) * 256)[: n_as * 4])
    text: list[str] = []
    cls: list[int] = []
    asn_col: list[int] = []
    bases: list[bytes] = []
    bits: list[int] = []
    v6: list[bool] = []
    slot_i = 0
    v6_tops = rng.choice(np.arange(0x2A000000, 0x2A0FFFFF), size=n_as, replace=False)
    for i in range(n_as):
        c = int(classes[i])
        for _ in range(int(rng.integers(1, 4))):
            slot = int(v4_slots[slot_i])
            slot_i += 1
            first, second = int(slots[slot // 256]), slot % 256
            lo, hi = _V4_LEN[c]
            length = int(rng.integers(lo, hi + 1))
            third = int(rng.integers(0, 256)) & ~((1 << (24 - length)) - 1) if length > 16 else 0
            net = ipaddress.IPv4Network(f"{first}.{second}.{third}.0/{length}")
            text.append(str(net))
            bases.append(bytes(10) + b"\xff\xff" + net.network_address.packed)
            bits.append(32 - length)
            cls.append(c)
            asn_col.append(int(asns[i]))
            v6.append(False)
        if rng.random() < _V6_SHARE[c]:
            length = _V6_LEN[c]
            top = int(v6_tops[i]).to_bytes(4, "big")
            net6 = ipaddress.IPv6Network((top + bytes(12), length))
            text.append(str(net6))
            bases.append(net6.network_address.packed)
            bits.append(128 - length)
            cls.append(c)
            asn_col.append(int(asns[i]))
            v6.append(True)
    prefixes = Prefixes(
        text=text,
        cls=np.array(cls, dtype=np.int8),
        asn=np.array(asn_col, dtype=np.uint32),
        base=np.frombuffer(b"".join(bases), dtype=np.uint8).reshape(-1, 16).copy(),
        host_bits=np.array(bits, dtype=np.int16),
        is_v6=np.array(v6, dtype=bool),
    )
    pools = {c: _pool(rng, prefixes, c, max(200, int(_HOSTS[c] * scale))) for c in range(4)}
    exporter_addr, _ = _pool_addresses(rng, prefixes, HOSTING, config.exporters, v6_share=0.0)
    rates = np.array([config.sampling[i % len(config.sampling)] for i in range(config.exporters)],
                     dtype=np.uint32)
    # A handful of internet-wide scanners in hosting space (they also appear in C2 decoys).
    scan_addr, scan_asn = _pool_addresses(rng, prefixes, HOSTING, 16, v6_share=0.0)
    return World(config.seed, prefixes, pools, exporter_addr, rates, config.observe_share,
                 HostPool(scan_addr, scan_asn))


def _pool_addresses(rng: np.random.Generator, p: Prefixes, cls: int, n: int,
                    v6_share: float) -> tuple[Addrs, U32]:
    """``n`` background addresses of a class, prefixes weighted by size (IPv4) or share (IPv6)."""
    idx4 = np.flatnonzero((p.cls == cls) & ~p.is_v6)
    idx6 = np.flatnonzero((p.cls == cls) & p.is_v6)
    w = np.exp2(p.host_bits[idx4].astype(np.float64))
    pick = idx4[rng.choice(len(idx4), size=n, p=w / w.sum())]
    if len(idx6) and v6_share > 0:
        six = rng.random(n) < v6_share
        pick[six] = idx6[rng.integers(0, len(idx6), int(six.sum()))]
    out = np.zeros((n, 16), dtype=np.uint8)
    u = rng.random(n)
    for k in np.unique(pick):
        rows = np.flatnonzero(pick == k)
        out[rows] = _host_in(p.base[k], int(p.host_bits[k]), u[rows], upper=False)
    return as_addr(out), p.asn[pick].astype(np.uint32)


def _pool(rng: np.random.Generator, p: Prefixes, cls: int, n: int) -> HostPool:
    addr, asn = _pool_addresses(rng, p, cls, n, _V6_HOST_SHARE)
    return HostPool(addr, asn)
