"""Victims of known C2 servers: classify every peer, with the evidence behind each label.

One pruned query fetches every flow touching the C2s; each flow is oriented (which end is the
C2, who initiated, on which service port) and the peers' evidence is aggregated per
(peer, C2): flows and bytes both ways, active days, probe share (SYN-only/unanswered flows),
admin-port contact, beacon score of the peer's check-ins, how many of the given C2s it touches,
its fan-out on its day where that can change the label, and its network class.
Ordered rules then label each peer; victims carry a confidence from how much evidence agrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from flowatlas.analytics import groups as g
from flowatlas.analytics.beacons import score_pairs
from flowatlas.analytics.frame import (
    AnalyticsError,
    RangeSet,
    addr_column,
    addr_keys,
    fetch_touching,
    key_prefixes,
    parse_addresses,
)
from flowatlas.analytics.netclass import EYEBALL, INFRASTRUCTURE, SECURITY, NetClassTable
from flowatlas.atlas import Atlas
from flowatlas.query.expr import AddrMatch, Direction, conjoin
from flowatlas.query.model import AggregateQuery, Selection
from flowatlas.query.plan import MAX_HINT_PREFIXES
from flowatlas.query.window import Window
from flowatlas.schema import ADDRESS_TYPE

ADMIN_PORTS = frozenset({22, 23, 3389, 5900, 5985, 5986, 2222, 50050, 8834, 10000})
SYN, ACK = 0x02, 0x10
DAY_US = 86_400 * 1_000_000
LABELS = ("victim", "operator", "scanner", "researcher", "infrastructure", "unknown")
FANOUT_CAP = 1000
# Each measured peer costs part of a lookup on its day; popular "C2s" have tens of thousands of
# one-day peers, so fan-out is measured for this many at most (most flows to the C2s first).
FANOUT_MAX_PEERS = 128


@dataclass
class VictimReport:
    c2: list[str]
    peers: pa.Table
    flows: int

    def to_table(self) -> pa.Table:
        return self.peers

    def to_dict(self) -> dict[str, Any]:
        from flowatlas.formats import to_records

        return {"c2": self.c2, "flows": self.flows, "peers": to_records(self.peers)}

    def label_of(self, address: str) -> str | None:
        from flowatlas.addresses import pack

        raw = pack(address)
        rows = [i for i, a in enumerate(self.peers.column("peer").to_pylist()) if a == raw]
        return str(self.peers.column("label")[rows[0]].as_py()) if rows else None


def classify_peers(atlas: Atlas, c2s: list[str], selection: Selection | None = None, *,
                   netclass: NetClassTable | None = None, fanout: bool = True) -> VictimReport:
    """Label every peer of the given C2 servers (see the module docstring)."""
    prefixes = parse_addresses(c2s, "C2 address")
    base = selection or Selection()
    netclass = netclass or NetClassTable.empty()
    frame = fetch_touching(atlas, Direction.ANY, prefixes, base)
    c2set = RangeSet(prefixes)
    src_c2 = c2set.contains(frame.src)
    dst_c2 = c2set.contains(frame.dst)
    one = np.flatnonzero(src_c2 != dst_c2)  # flows between two C2s say nothing about peers
    f = frame.take(one)
    inbound = dst_c2[one]  # peer -> C2
    peer = np.where(inbound, f.src, f.dst)
    c2 = np.where(inbound, f.dst, f.src)
    c2_port = np.where(inbound, f.dport, f.sport)
    peer_port = np.where(inbound, f.sport, f.dport)
    if len(f) == 0:
        return VictimReport([p.text for p in prefixes], _empty_table(), 0)

    # The C2's service port: the C2-side port reached by the most distinct peers.
    svc = _service_ports(c2, c2_port, peer, inbound)
    pid = g.dense_ids(peer)
    key = g.dense_ids(peer, c2)
    n = int(key.max()) + 1
    first_row = np.unique(key, return_index=True)[1]
    kp, kc = peer[first_row], c2[first_row]
    est = f.est_bytes
    tcp = f.proto == 6
    probe = tcp & ((f.flags & ACK) == 0)
    initiated = inbound & (peer_port > c2_port)
    up = np.bincount(key, weights=np.where(inbound, est, 0), minlength=n)
    down = np.bincount(key, weights=np.where(inbound, 0, est), minlength=n)
    flows = np.bincount(key, minlength=n)
    flows_up = np.bincount(key, weights=inbound, minlength=n)
    probes = np.bincount(key, weights=probe, minlength=n) / np.maximum(flows, 1)
    init_share = np.bincount(key, weights=initiated, minlength=n) / np.maximum(flows_up, 1)
    uc2, c2_inv = np.unique(c2, return_inverse=True)  # per distinct C2, not per flow
    c2_svc = np.array([svc.get(c.tobytes(), -1) for c in uc2], dtype=np.int64)[c2_inv.ravel()]
    on_svc = np.bincount(key, weights=(c2_port == c2_svc), minlength=n) / np.maximum(flows, 1)
    admin = np.bincount(key, weights=np.isin(c2_port, list(ADMIN_PORTS)), minlength=n) > 0
    day = f.start // DAY_US
    days = np.bincount(np.unique(key * 1_000_000 + (day - day.min()))  // 1_000_000, minlength=n)
    first = np.full(n, np.iinfo(np.int64).max)
    last = np.zeros(n, np.int64)
    np.minimum.at(first, key, f.start)
    np.maximum.at(last, key, f.end)
    rate = np.ones(n)
    np.maximum.at(rate, key, f.rate)
    # How many of the given C2s each peer touches.
    c2_count_by_peer = np.bincount(np.unique(pid * (n + 1) + key) // (n + 1))
    touches = c2_count_by_peer[pid[first_row]]
    # Beacon score of the peer's check-ins to the C2 (peer -> C2 flows, best port).
    beacon = np.zeros(n)
    up_rows = np.flatnonzero(inbound)
    if len(up_rows):
        scores = score_pairs(f.take(up_rows))
        if len(scores):
            sk = np.concatenate([kp, scores.src])
            ck = np.concatenate([kc, scores.dst])
            ids = g.dense_ids(sk, ck)
            row_of = {int(i): j for j, i in enumerate(ids[:n])}
            for j, i in enumerate(ids[n:]):
                r = row_of.get(int(i))
                if r is not None:
                    beacon[r] = max(beacon[r], float(scores.score[j]))
    classes = netclass.lookup(kp)
    # Fan-out only decides "scanner" for a one-day peer not already explained otherwise, so
    # only those peers are measured, each over its one day (-1: not measured).
    need = ((days <= 1) & (probes < 0.5) & (beacon < 0.5)
            & ~np.isin(np.asarray(classes, dtype=object), list(INFRASTRUCTURE)))
    fan = (_fanout(atlas, kp, first // DAY_US, need, flows, base) if fanout
           else np.full(n, -1, np.int64))

    label, conf, why = _rules(n, classes, probes, flows, up, down, days, admin, on_svc,
                              init_share, beacon, touches, fan, rate)
    table = pa.table({
        "peer": addr_column(kp), "c2": addr_column(kc), "label": label,
        "confidence": np.round(conf, 3), "why": why, "class": classes,
        "flows": flows.astype(np.int64), "bytes_up": up.round().astype(np.int64),
        "bytes_down": down.round().astype(np.int64), "days": days.astype(np.int64),
        "beacon": np.round(beacon, 3), "probe_share": np.round(probes, 3),
        "on_service_port": np.round(on_svc, 3), "admin_port": admin,
        "c2s_touched": touches.astype(np.int64), "fanout": fan.astype(np.int64),
        "sampling": rate.astype(np.int64),
        "first": pa.array(first, pa.int64()).cast(pa.timestamp("us", "UTC")),
        "last": pa.array(last, pa.int64()).cast(pa.timestamp("us", "UTC")),
    })
    order = np.lexsort((-conf, np.array([LABELS.index(x) for x in label])))
    return VictimReport([p.text for p in prefixes], table.take(pa.array(order)), len(f))


def _service_ports(c2: npt.NDArray[np.void], c2_port: npt.NDArray[np.int32],
                   peer: npt.NDArray[np.void], inbound: npt.NDArray[np.bool_]) -> dict[bytes, int]:
    rows = np.flatnonzero(inbound)
    if len(rows) == 0:
        return {}
    k = g.dense_ids(c2[rows], c2_port[rows].astype(np.int64), peer[rows])
    _, idx = np.unique(k, return_index=True)
    c, p = c2[rows][idx], c2_port[rows][idx]
    cp = g.dense_ids(c, p.astype(np.int64))
    cnt = np.bincount(cp)
    first = np.unique(cp, return_index=True)[1]
    best: dict[bytes, tuple[int, int]] = {}
    for i, j in enumerate(first):
        raw = c[j].tobytes()
        if cnt[i] > best.get(raw, (0, -1))[0]:
            best[raw] = (int(cnt[i]), int(p[j]))
    return {k2: v[1] for k2, v in best.items()}


def _fanout(atlas: Atlas, peers: npt.NDArray[np.void], day: npt.NDArray[np.int64],
            need: npt.NDArray[np.bool_], weight: npt.NDArray[np.int64], base: Selection
            ) -> npt.NDArray[np.int64]:
    """Distinct destinations each needed peer sent to on its day (one aggregate per day and
    256 peers, each pruned to that day's files and the peers' rows); -1 where not needed."""
    out = np.full(len(peers), -1, np.int64)
    rows = np.flatnonzero(need)
    rows = rows[np.argsort(-weight[rows], kind="stable")[:FANOUT_MAX_PEERS]]
    for d in np.unique(day[rows]).tolist():
        these = rows[day[rows] == d]
        uniq, inv = np.unique(peers[these], return_inverse=True)
        counts = np.zeros(len(uniq), np.int64)
        w = base.window
        since = datetime.fromtimestamp(d * 86_400, UTC)
        until = since + timedelta(days=1)
        window = Window(max(since, w.since) if w.since else since,
                        min(until, w.until) if w.until else until)
        for i in range(0, len(uniq), MAX_HINT_PREFIXES):
            chunk = tuple(key_prefixes(uniq[i:i + MAX_HINT_PREFIXES]))
            sel = Selection(conjoin(AddrMatch(Direction.SRC, chunk), base.filter), window,
                            base.scope)
            t = atlas.aggregate(AggregateQuery(sel, keys=("src_addr", "dst_addr"), limit=None))
            if t.num_rows:
                pos = np.searchsorted(uniq, addr_keys(t.column("src_addr")))
                counts += np.bincount(pos, minlength=len(uniq))
        out[these] = counts[inv.ravel()]
    return out


def _rules(n: int, classes: list[str], probes: Any, flows: Any, up: Any, down: Any, days: Any,
           admin: Any, on_svc: Any, init_share: Any, beacon: Any, touches: Any, fan: Any,
           rate: Any) -> tuple[list[str], npt.NDArray[np.float64], list[str]]:
    label: list[str] = []
    conf = np.zeros(n)
    why: list[str] = []
    for i in range(n):  # one row per peer, not per flow: the rules read best as plain code
        cls = classes[i]
        both = up[i] > 0 and down[i] > 0
        if cls in INFRASTRUCTURE:
            label.append("infrastructure")
            conf[i] = 0.9
            why.append(f"network class {cls}")
            continue
        if probes[i] >= 0.5:
            label.append("scanner")
            conf[i] = min(0.99, 0.5 + 0.1 * flows[i]) * probes[i]
            why.append(f"{probes[i]:.0%} of flows SYN-only/unanswered"
                       + (f", fan-out {fan[i]}" if fan[i] >= FANOUT_CAP else ""))
            continue
        if fan[i] >= FANOUT_CAP and days[i] <= 1 and beacon[i] < 0.5:
            label.append("scanner")
            conf[i] = 0.6
            why.append(f"fan-out {fan[i]} destinations, {days[i]} day")
            continue
        if admin[i] and both and on_svc[i] < 0.5:
            label.append("operator")
            conf[i] = min(0.99, 0.6 + 0.1 * days[i] + (0.2 if cls not in EYEBALL else 0))
            why.append(f"admin port, data both ways, {days[i]} day(s), class {cls}")
            continue
        if (touches[i] >= 2 or cls in SECURITY) and days[i] <= 1:
            label.append("researcher")
            conf[i] = 0.8 if touches[i] >= 2 else 0.6
            why.append(f"touches {touches[i]} of the C2s on {days[i]} day, class {cls}")
            continue
        eyeball = 1.0 if cls in EYEBALL else (0.5 if cls == "unknown" else 0.0)
        persist = min(days[i] / 3.0, 1.0)
        score = (0.25 * init_share[i] * on_svc[i] + 0.2 * float(both) + 0.25 * persist
                 + 0.2 * beacon[i] + 0.1 * eyeball)
        if days[i] >= 2 and on_svc[i] >= 0.5 and (both or rate[i] > 1) and score >= 0.55:
            label.append("victim")
            conf[i] = score
            why.append(f"checks in on the service port on {days[i]} days, beacon {beacon[i]:.2f}"
                       f", {'data both ways' if both else 'one way seen (sampled)'}, class {cls}")
            continue
        if days[i] <= 1 and cls == "hosting":
            label.append("researcher")
            conf[i] = 0.4
            why.append(f"one day only from hosting space ({flows[i]} flows)")
            continue
        label.append("unknown")
        conf[i] = score
        why.append(f"{days[i]} day(s), beacon {beacon[i]:.2f}, on service port {on_svc[i]:.0%}, "
                   f"class {cls}: not enough evidence")
    return label, conf, why


def _empty_table() -> pa.Table:
    return pa.table({"peer": pa.array([], ADDRESS_TYPE), "c2": pa.array([], ADDRESS_TYPE),
                     "label": pa.array([], pa.string()),
                     "confidence": pa.array([], pa.float64()), "why": pa.array([], pa.string())})


__all__ = ["LABELS", "AnalyticsError", "VictimReport", "classify_peers"]
