"""C2 servers: beaconing victims, operators logging in, and decoys that also touch the server.

Victims check in every ``period`` seconds (uniform jitter of ``jitter`` x period) between their
first and last active day, a few packets each way per check-in. Operators reach an admin port
from hosting/VPN space in interactive sessions. Decoys: internet scanners (unanswered SYNs),
researchers (one day of short probes to every C2), and a CDN health check (small, periodic,
from CDN space: a beacon look-alike that is not a victim).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flowatlas.simulate.config import DAY_US, MS, US, SimConfig
from flowatlas.simulate.flows import SYN, TCP, TCP_FULL, Columns, concat
from flowatlas.simulate.scenarios.planted import Planted, Truth, iso, path_info, records, text
from flowatlas.simulate.world import CDN, CLASSES, ENTERPRISE, HOSTING, RESIDENTIAL, World

C2_PORTS = (443, 8443, 4444, 8080, 1337)
ADMIN_PORTS = (22, 3389, 50050)
PERIODS_S = (60, 300, 600, 900, 1800, 3600)
PERIOD_WEIGHTS = (0.1, 0.3, 0.2, 0.2, 0.1, 0.1)
JITTERS = (0.0, 0.05, 0.2, 0.5)
HEALTHCHECK_PERIOD_S = 120


def _exchange(rng: np.random.Generator, t: np.ndarray, a: np.void, a_as: int, b: np.void,
              b_as: int, port: int, req: tuple[int, int], rep: tuple[int, int],
              req_size: float, rep_size: float) -> Columns:
    """A TCP exchange a->b at times ``t`` and its reply b->a, with sizes around the given ones."""
    n = len(t)
    sport = rng.integers(32768, 61000, n)
    p_req = rng.integers(req[0], req[1] + 1, n)
    p_rep = rng.integers(rep[0], rep[1] + 1, n)
    dur = (rng.uniform(50, 800, n) * MS).astype(np.int64)
    fwd = records(t, t + dur, a, a_as, b, b_as, sport, port, TCP, p_req,
                  (p_req * 52 + req_size * rng.uniform(0.9, 1.1, n)).astype(np.int64), TCP_FULL)
    back = records(t + 20 * MS, t + dur, b, b_as, a, a_as, port, sport, TCP, p_rep,
                   (p_rep * 52 + rep_size * rng.uniform(0.9, 1.1, n)).astype(np.int64), TCP_FULL)
    return concat([fwd, back])


def plant_c2(world: World, config: SimConfig, rng: np.random.Generator, planted: Planted,
             index: int, researchers: list[Truth], research_hosts: Any) -> Truth:
    start, end = config.start_us, config.end_us
    days = max(1, int(config.days))
    c2_addr, c2_as = world.allocate(rng, HOSTING, 1)
    c2, c2_asn = c2_addr[0], int(c2_as[0])
    port = int(rng.choice(C2_PORTS))
    truth: Truth = {
        "id": f"c2-{index + 1}", "address": text(c2), "asn": c2_asn, "port": port,
        "protocol": TCP, "victims": [], "operators": [], "decoys": [],
    }
    n_victims = config.scenarios.victims
    eyeball = rng.random(n_victims) < 0.7
    res_addr, res_as = world.allocate(rng, RESIDENTIAL, int(eyeball.sum()))
    ent_addr, ent_as = world.allocate(rng, ENTERPRISE, int((~eyeball).sum()))
    vi = ei = 0
    for v in range(n_victims):
        if eyeball[v]:
            addr, asn, cls = res_addr[vi], int(res_as[vi]), RESIDENTIAL
            vi += 1
        else:
            addr, asn, cls = ent_addr[ei], int(ent_as[ei]), ENTERPRISE
            ei += 1
        period = int(rng.choice(PERIODS_S, p=PERIOD_WEIGHTS))
        jitter = float(rng.choice(JITTERS))
        first_day = int(rng.integers(0, max(1, days // 2)))
        last_day = int(rng.integers(min(first_day + 2, days - 1), days)) if days > 1 else 0
        t0 = start + first_day * DAY_US + int(rng.integers(0, DAY_US // 2))
        # Spans under a day (--days 0.2) put t0 past the end: keep at least one check-in.
        last_ok = max(start + 1, end - 60 * US)
        t0 = min(t0, last_ok - 1)
        t1 = min(end - 60 * US, start + (last_day + 1) * DAY_US)
        k = max(1, (t1 - t0) // (period * US))
        t = t0 + np.arange(k, dtype=np.int64) * period * US
        if jitter:
            t = t + (rng.uniform(-jitter / 2, jitter / 2, k) * period * US).astype(np.int64)
        t = np.sort(t[(t >= start) & (t < last_ok)])
        if len(t) == 0:
            t = np.array([t0], dtype=np.int64)
        payload = float(rng.integers(120, 900))
        victim: Truth = {
            "address": text(addr), "asn": asn, "class": CLASSES[cls], "period_s": period,
            "jitter": jitter, "first_day": iso(start + first_day * DAY_US)[:10],
            "last_day": iso(start + last_day * DAY_US)[:10], "first_seen": iso(int(t[0])),
            "last_seen": iso(int(t[-1])), "checkins": len(t), "payload_bytes": payload,
            **path_info(world, asn, c2_asn),
        }
        planted.add(_exchange(rng, t, addr, asn, c2, c2_asn, port, (3, 8), (3, 6),
                              payload, payload * 1.5), victim)
        truth["victims"].append(victim)
    for o in range(int(rng.integers(1, 3))):
        addr_o, as_o = world.allocate(rng, HOSTING, 1)
        admin = int(rng.choice(ADMIN_PORTS))
        active = np.flatnonzero(rng.random(days) < 0.4)
        if len(active) == 0:
            active = np.array([days // 2])
        starts = np.sort(np.concatenate([
            start + d * DAY_US + rng.integers(0, DAY_US - 3_600 * US, int(rng.integers(1, 4)))
            for d in active]))
        starts = starts[starts < end - 3_600 * US]
        dur = (rng.uniform(5, 60, len(starts)) * 60 * US).astype(np.int64)
        operator: Truth = {"address": text(addr_o[0]), "asn": int(as_o[0]), "admin_port": admin,
                           "sessions": len(starts), **path_info(world, int(as_o[0]), c2_asn)}
        del o
        pk = rng.integers(200, 3000, len(starts))
        sport = rng.integers(32768, 61000, len(starts))
        planted.add(concat([
            records(starts, starts + dur, addr_o[0], int(as_o[0]), c2, c2_asn, sport, admin,
                    TCP, pk, pk * 90, TCP_FULL),
            records(starts + 30 * MS, starts + dur, c2, c2_asn, addr_o[0], int(as_o[0]), admin,
                    sport, TCP, pk, pk * 700, TCP_FULL),
        ]), operator)
        truth["operators"].append(operator)
    # Decoys: scanners that probe the C2 port a few times, unanswered.
    for s in rng.choice(len(world.scanners), 3, replace=False):
        addr_s, as_s = world.scanners.addr[s], int(world.scanners.asn[s])
        t = np.sort(rng.integers(start, end - US, int(rng.integers(2, 6))))
        decoy: Truth = {"address": text(addr_s), "asn": as_s, "kind": "scanner",
                        **path_info(world, as_s, c2_asn)}
        planted.add(records(t, t, addr_s, as_s, c2, c2_asn, rng.integers(1024, 65535, len(t)),
                            port, TCP, 1, 44, SYN), decoy)
        truth["decoys"].append(decoy)
    # Researchers: one day each, a handful of answered probes; the same hosts probe every C2.
    for r, researcher in enumerate(researchers):
        addr_r, as_r = research_hosts[0][r], int(research_hosts[1][r])
        day = int(rng.integers(0, days))
        t = np.sort(start + day * DAY_US + rng.integers(0, DAY_US - US, int(rng.integers(4, 20))))
        t = t[t < end - US]
        decoy = {"address": researcher["address"], "asn": as_r, "kind": "researcher",
                 "day": iso(start + day * DAY_US)[:10], **path_info(world, as_r, c2_asn)}
        planted.add(_exchange(rng, t, addr_r, as_r, c2, c2_asn, port, (2, 4), (2, 4), 200, 600),
                    decoy)
        truth["decoys"].append(decoy)
    # A CDN health check: periodic and tiny, all span long.
    addr_h, as_h = world.allocate(rng, CDN, 1)
    t = np.arange(start + int(rng.integers(0, 60)) * US, end - US, HEALTHCHECK_PERIOD_S * US)
    decoy = {"address": text(addr_h[0]), "asn": int(as_h[0]), "kind": "cdn_healthcheck",
             "period_s": HEALTHCHECK_PERIOD_S, **path_info(world, int(as_h[0]), c2_asn)}
    planted.add(_exchange(rng, t, addr_h[0], int(as_h[0]), c2, c2_asn, port, (1, 2), (1, 2),
                          60, 120), decoy)
    truth["decoys"].append(decoy)
    return truth


def plant_researchers(world: World, rng: np.random.Generator, n: int) -> tuple[
        list[Truth], Any]:
    addr, asn = world.allocate(rng, HOSTING, n)
    return [{"address": text(a), "asn": int(s)} for a, s in zip(addr, asn, strict=True)], (addr,
                                                                                            asn)
