"""An enterprise network whose hosts talk to a planted bad destination over several days."""

from __future__ import annotations

import numpy as np

from flowatlas.simulate.config import DAY_US, MS, US, SimConfig
from flowatlas.simulate.flows import TCP, TCP_FULL, concat
from flowatlas.simulate.scenarios.planted import Planted, Truth, iso, path_info, records, text
from flowatlas.simulate.world import ENTERPRISE, HOSTING, World


def plant_enterprise(world: World, config: SimConfig, rng: np.random.Generator,
                     planted: Planted, index: int) -> Truth:
    start, end = config.start_us, config.end_us
    days = max(1, int(config.days))
    asn = int(rng.choice(world.asns_of(ENTERPRISE)))
    p = world.prefixes
    prefixes = sorted(t for t, a in zip(p.text, p.asn, strict=True) if int(a) == asn)
    bad, bad_as = world.allocate(rng, HOSTING, 1)
    port = int(rng.choice([443, 80, 8443]))
    talkers, _ = world.allocate(rng, ENTERPRISE, config.scenarios.talkers, asn=asn)
    truth: Truth = {
        "id": f"enterprise-{index + 1}", "asn": asn, "prefixes": prefixes,
        "bad_destination": {"address": text(bad[0]), "asn": int(bad_as[0]), "port": port},
        "hosts": [],
    }
    for host in talkers:
        active = np.sort(rng.choice(days, size=min(days, int(rng.integers(1, 6))), replace=False))
        t = np.sort(np.concatenate([
            start + d * DAY_US + rng.integers(8 * 3_600 * US, 18 * 3_600 * US,
                                              int(rng.integers(1, 10)))
            for d in active]))
        t = (t[t < end - 600 * US] // MS) * MS
        if len(t) == 0:
            t = np.array([start + 9 * 3_600 * US])
        n = len(t)
        sport = rng.integers(32768, 61000, n)
        up = rng.integers(5, 400, n)
        dur = (rng.uniform(0.5, 120, n) * US).astype(np.int64)
        info: Truth = {
            "address": text(host), "first_seen": iso(int(t[0])), "last_seen": iso(int(t[-1])),
            "connections": n, **path_info(world, asn, int(bad_as[0])),
        }
        planted.add(concat([
            records(t, t + dur, host, asn, bad[0], int(bad_as[0]), sport, port, TCP, up,
                    up * 900, TCP_FULL),
            records(t + 15 * MS, t + dur, bad[0], int(bad_as[0]), host, asn, port, sport, TCP,
                    up // 2 + 2, up * 60, TCP_FULL),
        ]), info)
        truth["hosts"].append(info)
    return truth
