"""Relay chains: interactive sessions from an origin through 1-16 relays to a target.

Each leg (node i -> node i+1) is recorded per 60 s slice, the way an exporter's active timeout
cuts a long connection, so every leg has a byte series over time. Leg i starts and ends later
than leg i-1 by the hop latency plus jitter, carries the same interactive volume pattern scaled
by its overhead (encapsulation and padding), and has a reverse-direction record per slice.
Each relay also carries other users' sessions (cover traffic) that overlap the chain's.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from flowatlas.simulate.config import MS, US, SimConfig
from flowatlas.simulate.flows import TCP, TCP_FULL, UDP, Columns, concat
from flowatlas.simulate.scenarios.planted import Planted, Truth, iso, path_info, records, text
from flowatlas.simulate.world import CDN, ENTERPRISE, HOSTING, RESIDENTIAL, World

SLICE_S = 60
KINDS = {"proxy": (TCP, 1080), "vpn": (UDP, 51820), "ssh": (TCP, 22)}
TARGET_PORTS = (22, 443, 3389)


def interactive_series(rng: np.random.Generator, slices: int) -> tuple[
        npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Bytes per slice each way: bursts of typing and output between quiet keep-alive spells."""
    active = np.zeros(slices, dtype=bool)
    state = True
    for s in range(slices):  # a short on/off Markov chain per session (tens of slices)
        active[s] = state
        state = rng.random() < (0.75 if state else 0.35)
    fwd = np.where(active, rng.lognormal(8.0, 0.8, slices), rng.uniform(150, 400, slices))
    rev = np.where(active, fwd * rng.lognormal(2.0, 0.7, slices), rng.uniform(150, 400, slices))
    return fwd, rev


def session_legs(rng: np.random.Generator, nodes: npt.NDArray[np.void], asns: list[int],
                 protocols: list[int], ports: list[int], t0: int, duration: int,
                 latency_ms: npt.NDArray[np.float64], jitter_ms: npt.NDArray[np.float64],
                 overhead: npt.NDArray[np.float64]) -> list[tuple[Columns, list[int]]]:
    """Per-slice records for every leg (both directions); returns (records, src ports) per leg."""
    slices = max(1, -(-duration // (SLICE_S * US)))
    fwd, rev = interactive_series(rng, slices)
    s0 = t0 + np.arange(slices, dtype=np.int64) * SLICE_S * US
    s1 = np.minimum(s0 + SLICE_S * US, t0 + duration)
    offset = np.concatenate([[0.0], np.cumsum(latency_ms)])
    out = []
    for leg in range(len(nodes) - 1):
        sport = int(rng.integers(32768, 61000))
        delay = ((offset[leg] + rng.normal(0, jitter_ms[leg], slices).clip(-offset[leg], None))
                 * MS).astype(np.int64)
        a, b = nodes[leg], nodes[leg + 1]
        proto, port = protocols[leg], ports[leg]
        fb = fwd * overhead[leg]
        rb = rev * overhead[leg]
        back_delay = delay + int(2 * latency_ms[leg:].sum() * MS)
        cols = concat([
            records(s0 + delay, s1 + delay, a, asns[leg], b, asns[leg + 1], sport, port, proto,
                    np.ceil(fb / 110), fb.astype(np.int64), TCP_FULL),
            records(s0 + back_delay, s1 + back_delay, b, asns[leg + 1], a, asns[leg], port,
                    sport, proto, np.ceil(rb / 520), rb.astype(np.int64), TCP_FULL),
        ])
        out.append((cols, [sport]))
    return out


def plant_chain(world: World, config: SimConfig, rng: np.random.Generator, planted: Planted,
                index: int, hops: int) -> Truth:
    start, end = config.start_us, config.end_us
    origin, origin_as = world.allocate(rng, RESIDENTIAL, 1)
    relays, relay_as = world.allocate(rng, HOSTING, hops)
    target_cls = ENTERPRISE if rng.random() < 0.5 else HOSTING
    target, target_as = world.allocate(rng, target_cls, 1)
    kinds = [str(k) for k in rng.choice(list(KINDS), hops)]
    nodes = np.concatenate([origin, relays, target])
    asns = [int(origin_as[0]), *map(int, relay_as), int(target_as[0])]
    target_port = int(rng.choice(TARGET_PORTS))
    protocols = [KINDS[k][0] for k in kinds] + [TCP]
    ports = [KINDS[k][1] for k in kinds] + [target_port]
    duration = int(rng.uniform(10, 90) * 60) * US
    t0 = int(rng.integers(start, max(start + 1, end - duration - 3_600 * US))) // MS * MS
    latency = rng.uniform(5, 80, hops + 1).round(3)
    jitter = rng.uniform(0.5, 8, hops + 1).round(3)
    overhead = (1 + rng.uniform(0.0, 0.3, hops + 1)).round(4)
    overhead[0] = overhead[-1] = 1.0  # padding lives inside the chain
    legs = session_legs(rng, nodes, asns, protocols, ports, t0, duration, latency, jitter,
                        overhead)
    truth: Truth = {
        "id": f"relay-{index + 1}", "hops": hops,
        "path": [text(n) for n in nodes],
        "kinds": ["origin", *kinds, "target"],
        "session_start": iso(t0), "session_end": iso(t0 + duration),
        "slice_seconds": SLICE_S, "legs": [],
    }
    for leg, (cols, sports) in enumerate(legs):
        info: Truth = {
            "src": truth["path"][leg], "dst": truth["path"][leg + 1],
            "src_port": sports[0], "dst_port": ports[leg], "protocol": protocols[leg],
            "latency_ms": float(latency[leg]), "jitter_ms": float(jitter[leg]),
            "overhead": float(overhead[leg]), **path_info(world, asns[leg], asns[leg + 1]),
        }
        planted.add(cols, info)
        truth["legs"].append(info)
    # Cover traffic: other users through each relay, overlapping the chain's session.
    cover: Truth = {"sessions": 0, "records": 0, "observed_records": 0}
    for r in range(hops):
        for _ in range(config.scenarios.cover):
            user, user_as = world.allocate(rng, RESIDENTIAL, 1)
            dest, dest_as = world.allocate(rng, HOSTING if rng.random() < 0.5 else CDN, 1)
            c_dur = int(rng.uniform(5, 90) * 60) * US
            c_t0 = t0 + int(rng.uniform(-1800, 1800)) * US
            c_t0 = int(min(max(c_t0, start), end - c_dur - 3_600 * US)) // MS * MS
            c_nodes = np.concatenate([user, relays[r:r + 1], dest])
            c_asns = [int(user_as[0]), int(relay_as[r]), int(dest_as[0])]
            c_legs = session_legs(
                rng, c_nodes, c_asns, [protocols[r], TCP], [ports[r], 443], c_t0, c_dur,
                rng.uniform(5, 80, 2), rng.uniform(0.5, 8, 2), np.array([1.0, 1.0]))
            for cols, _ in c_legs:
                planted.add(cols, cover)
            cover["sessions"] += 1
    truth["cover"] = cover
    return truth


def hop_counts(rng: np.random.Generator, chains: int, max_hops: int) -> list[int]:
    """Chain lengths: the first two are 1 and ``max_hops`` so both extremes always exist."""
    fixed = [1, max_hops][:chains]
    return fixed + [int(h) for h in rng.integers(1, max_hops + 1, max(0, chains - 2))]
