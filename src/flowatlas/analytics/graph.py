"""Peer graph: who talked to whom around seed addresses, hop by hop.

Each hop reads its frontier's edges with one-sided aggregates (flows from the nodes, flows to
them), grouped by (node, peer, destination port). Nodes whose distinct peers exceed a cap, or
that a network class table calls infrastructure (CDN, resolvers), are hubs: they stay in the
graph as leaves with their degree recorded, but are not expanded, so one CDN does not pull in
half the internet. Hubs are found before their edges are read (class, then one-day and seven-day probes),
and each hop expands a bounded number of the strongest ties: on a large store every expanded
node costs a lookup over the whole window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from flowatlas.analytics import groups as g
from flowatlas.analytics.frame import (
    ADDR,
    AnalyticsError,
    addr_column,
    addr_keys,
    key_prefixes,
)
from flowatlas.analytics.netclass import INFRASTRUCTURE, NetClassTable
from flowatlas.atlas import Atlas
from flowatlas.query.expr import AddrMatch, Direction, conjoin
from flowatlas.query.model import AggregateQuery, Selection
from flowatlas.query.plan import MAX_HINT_PREFIXES
from flowatlas.query.window import Window
from flowatlas.schema import ADDRESS_TYPE

TS = pa.timestamp("us", "UTC")


@dataclass
class PeerGraph:
    nodes: pa.Table
    edges: pa.Table
    seeds: list[str]
    hops: int
    max_degree: int

    def to_table(self) -> pa.Table:
        return self.edges

    def to_dict(self) -> dict[str, Any]:
        from flowatlas.formats import to_records

        return {"seeds": self.seeds, "hops": self.hops, "max_degree": self.max_degree,
                "nodes": to_records(self.nodes), "edges": to_records(self.edges)}

    def to_graphml(self) -> str:
        from flowatlas.formats import to_records

        def keys(table: pa.Table, target: str) -> list[str]:
            out = []
            for f in table.schema:
                kind = "long" if pa.types.is_integer(f.type) else (
                    "double" if pa.types.is_floating(f.type) else (
                        "boolean" if pa.types.is_boolean(f.type) else "string"))
                out.append(f'  <key id="{target}_{f.name}" for="{target}" attr.name="{f.name}" '
                           f'attr.type="{kind}"/>')
            return out

        def data(rec: dict[str, Any], target: str) -> str:
            return "".join(
                f'<data key="{target}_{k}">{escape(_graphml_value(v))}</data>'
                for k, v in rec.items() if v is not None)

        lines = ['<?xml version="1.0" encoding="UTF-8"?>',
                 '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">',
                 *keys(self.nodes, "node"), *keys(self.edges, "edge"),
                 '  <graph id="peers" edgedefault="undirected">']
        for rec in to_records(self.nodes):
            lines.append(f'    <node id="{escape(rec["addr"])}">{data(rec, "node")}</node>')
        for rec in to_records(self.edges):
            lines.append(f'    <edge source="{escape(rec["a"])}" target="{escape(rec["b"])}">'
                         f'{data(rec, "edge")}</edge>')
        lines += ["  </graph>", "</graphml>"]
        return "\n".join(lines) + "\n"


def _graphml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def peer_graph(atlas: Atlas, seeds: list[str], selection: Selection | None = None, *,
               hops: int = 1, max_degree: int = 200, netclass: NetClassTable | None = None,
               max_nodes: int = 20_000, max_expand: int = 16) -> PeerGraph:
    """The graph of peers within ``hops`` of ``seeds`` over the selection's window."""
    if not 1 <= hops <= 6:
        raise AnalyticsError(f"hops={hops}: must be 1..6")
    if max_degree < 1:
        raise AnalyticsError(f"max_degree={max_degree}: must be >= 1")
    if max_expand < 1:
        raise AnalyticsError(f"max_expand={max_expand}: must be >= 1")
    from flowatlas.analytics.frame import addr_key

    seed_keys = np.unique(np.array([addr_key(s) for s in seeds], dtype=ADDR))
    base = selection or Selection()
    netclass = netclass or NetClassTable.empty()
    node_hop: dict[bytes, int] = {k.tobytes(): 0 for k in seed_keys}
    degree: dict[bytes, int] = {}
    hub_reason: dict[bytes, str] = {}
    unexpanded: dict[bytes, str] = {}
    edge_parts: list[pa.Table] = []
    frontier = list(seed_keys)
    probes = _probe_windows(atlas, base)
    for hop in range(1, hops + 1):
        if not frontier:
            break
        # Hubs are found before their edges are read: by class, then by a one-day probe.
        others = [k for k in frontier if node_hop.get(k.tobytes()) != 0]
        classes_f = netclass.lookup(np.array(others, dtype=ADDR)) if others else []
        for key, cls in zip(others, classes_f, strict=True):
            if cls in INFRASTRUCTURE:
                hub_reason[key.tobytes()] = f"network class {cls}"
        others = [k for k in others if k.tobytes() not in hub_reason]
        # Reading a node's whole window costs a lookup per node (tens of ms on a large store),
        # so each hop expands at most ``max_expand`` nodes: the strongest ties first (frontier
        # order). Candidates pass a one-day probe (256 per query), then a seven-day one (a
        # node with few peers a day can still have thousands in months), before the full read.
        chosen: list[np.void] = []
        pending: list[np.void] = []
        pos = 0
        while len(chosen) < max_expand and (pending or pos < len(others)):
            if not pending:
                batch = others[pos:pos + MAX_HINT_PREFIXES]
                pos += len(batch)
                hubs = _probe_hubs(atlas, probes[0], batch, max_degree) if probes else {}
                pending = [k for k in batch if k.tobytes() not in hubs]
            else:
                take = pending[:max_expand - len(chosen)]
                pending = pending[len(take):]
                hubs = (_probe_hubs(atlas, probes[1], take, max_degree) if len(probes) > 1
                        else {})
                chosen += [k for k in take if k.tobytes() not in hubs]
            for raw, (deg_day, why) in hubs.items():
                degree[raw] = deg_day
                hub_reason[raw] = why
        others = [k for k in others if k.tobytes() not in hub_reason]
        chosen_set = {k.tobytes() for k in chosen}
        for k in others:
            if k.tobytes() not in chosen_set:
                unexpanded[k.tobytes()] = (f"not expanded: beyond the {max_expand} strongest "
                                           f"ties of hop {hop - 1}")
        expand = [k for k in frontier if node_hop.get(k.tobytes()) == 0] + chosen
        rows = _edges_of(atlas, base, expand)
        if rows.num_rows == 0:
            frontier = []
            continue
        local = addr_keys(rows.column("local"))
        peer = addr_keys(rows.column("peer"))
        lid = g.dense_ids(local)
        pair = g.dense_ids(local, peer)
        # Distinct peers per local node: its fan-in plus fan-out.
        uniq_pairs = np.unique(pair, return_index=True)[1]
        deg = np.bincount(lid[uniq_pairs], minlength=int(lid.max()) + 1)
        ulocal = local[np.unique(lid, return_index=True)[1]]
        expanded = np.ones(len(ulocal), dtype=bool)
        for i, key in enumerate(ulocal):  # one per frontier node
            raw = key.tobytes()
            degree[raw] = int(deg[i])
            if node_hop.get(raw) == 0:
                continue  # seeds are always expanded: the user asked about them
            if deg[i] > max_degree:
                hub_reason[raw] = f"degree {int(deg[i])} > {max_degree}"
                expanded[i] = False
        # A hub keeps only its edges to nodes already in the graph.
        known = _member(peer, np.array(list(node_hop), dtype=ADDR))
        keep = expanded[lid] | known
        rows = rows.filter(pa.array(keep))
        peer = peer[keep]
        new = []
        # Strongest ties first: the next hop expands from the top of this list.
        weight = rows.column("flows").to_numpy().astype(np.float64)
        pid = g.dense_ids(peer)
        tie = np.bincount(pid, weights=weight)
        first = np.unique(pid, return_index=True)[1]
        for j in np.argsort(-tie, kind="stable").tolist():
            key = peer[first[j]]
            raw = key.tobytes()
            if raw not in node_hop and len(node_hop) < max_nodes:
                node_hop[raw] = hop
                new.append(key)
        if len(node_hop) >= max_nodes:
            rows = rows.filter(pa.array(_member(peer, np.array(list(node_hop), dtype=ADDR))))
        edge_parts.append(rows)
        frontier = new
    edges = _merge_edges(edge_parts)
    nodes = _nodes(node_hop, degree, hub_reason, unexpanded, netclass, edges)
    return PeerGraph(nodes, edges, [str(s) for s in seeds], hops, max_degree)


def _member(keys: npt.NDArray[np.void], members: npt.NDArray[np.void]) -> npt.NDArray[np.bool_]:
    """Whether each key is one of ``members`` (vectorised: sort and binary search)."""
    if len(members) == 0 or len(keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    s = np.sort(members)
    idx = np.minimum(np.searchsorted(s, keys), len(s) - 1)
    out: npt.NDArray[np.bool_] = s[idx] == keys
    return out


def _probe_windows(atlas: Atlas, base: Selection) -> list[Selection]:
    """The last stored day, then the last 7 stored days, of the selection's window (each only
    when shorter than the window): where hubs are told apart cheaply."""
    w = base.window
    days = [d for d in atlas.store.days()
            if (w.since is None or _day_end(d) > w.since)
            and (w.until is None or _day_start(d) < w.until)]
    out = []
    for n in (1, 7):
        if len(days) <= n:
            break  # the whole window is this short: the full query is the probe
        lo, hi = _day_start(days[-n]), _day_end(days[-1])
        if w.since is not None:
            lo = max(lo, w.since)
        if w.until is not None:
            hi = min(hi, w.until)
        out.append(Selection(base.filter, Window(lo, hi), base.scope))
    return out


def _day_start(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _day_end(d: date) -> datetime:
    return _day_start(d) + timedelta(days=1)


def _probe_hubs(atlas: Atlas, probe: Selection, nodes: list[np.void], max_degree: int
                ) -> dict[bytes, tuple[int, str]]:
    """Nodes with more than ``max_degree`` distinct peers in the probe window alone.

    Distinct peers over the whole window are at least those of part of it, so these are hubs
    whatever the full query would say; skipping their full edge list keeps a busy server from
    costing a scan of months of its traffic.
    """
    out: dict[bytes, tuple[int, str]] = {}
    since, until = probe.window.since, probe.window.until
    span = ("the last day" if since is None or until is None else
            f"{since.date().isoformat()} alone" if until - since <= timedelta(days=1) else
            f"{since.date().isoformat()}..{(until - timedelta(days=1)).date().isoformat()}")
    t = _one_sided(atlas, probe, nodes, MAX_HINT_PREFIXES, ())
    if t.num_rows == 0:
        return out
    local = addr_keys(t.column("local"))
    pair = g.dense_ids(local, addr_keys(t.column("peer")))
    first = np.unique(pair, return_index=True)[1]
    ulocal, counts = np.unique(local[first], return_counts=True)
    for key, n in zip(ulocal[counts > max_degree], counts[counts > max_degree], strict=True):
        out[key.tobytes()] = (int(n), f"{int(n)} peers in {span} > {max_degree}")
    return out


# Each address in a query adds a comparison per row read; past a few dozen, one query costs
# more than several (measured on the 100M-flow store: 32-64 per query is near the best per node).
EDGE_CHUNK = 32


def _one_sided(atlas: Atlas, base: Selection, nodes: list[np.void], chunk: int,
               extra: tuple[str, ...]) -> pa.Table:
    """Flows from and to ``nodes`` as (local, peer, direction, *extra) groups.

    Two one-sided queries (source-sorted, then destination-sorted copy) instead of one
    either-side query: no anchored CASE per key and no "not from the chunk" condition to
    evaluate per row. A flow between two of the nodes comes back from both ends.
    """
    parts = []
    prefixes = key_prefixes(np.array(nodes, dtype=ADDR))
    for i in range(0, len(prefixes), chunk):
        part = tuple(prefixes[i:i + chunk])
        for direction, own, other, label in ((Direction.SRC, "src_addr", "dst_addr", "out"),
                                             (Direction.DST, "dst_addr", "src_addr", "in")):
            sel = Selection(conjoin(AddrMatch(direction, part), base.filter), base.window,
                            base.scope)
            t = atlas.aggregate(AggregateQuery(sel, keys=(own, other, *extra), limit=None))
            if t.num_rows == 0:
                continue
            cols = {"local": t.column(own), "peer": t.column(other),
                    "direction": pa.array([label] * t.num_rows, pa.string())}
            cols.update({k: t.column(k) for k in (*extra, "flows", "packets", "bytes", "first",
                                                  "last")})
            parts.append(pa.table(cols))
    return pa.concat_tables(parts) if parts else pa.table({})


def _edges_of(atlas: Atlas, base: Selection, frontier: list[np.void]) -> pa.Table:
    # A flow between two frontier nodes is reported from both ends; _merge_edges keeps one.
    return _one_sided(atlas, base, frontier, EDGE_CHUNK, ("dst_port",))


def _merge_edges(parts: list[pa.Table]) -> pa.Table:
    empty = pa.table({"a": pa.array([], ADDRESS_TYPE), "b": pa.array([], ADDRESS_TYPE),
                      "flows": pa.array([], pa.int64()), "bytes": pa.array([], pa.int64()),
                      "packets": pa.array([], pa.int64()), "a_to_b": pa.array([], pa.int64()),
                      "b_to_a": pa.array([], pa.int64()), "ports": pa.array([], pa.string()),
                      "first": pa.array([], TS), "last": pa.array([], TS)})
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return empty
    t = pa.concat_tables(parts)
    local = addr_keys(t.column("local"))
    peer = addr_keys(t.column("peer"))
    out = np.asarray(t.column("direction").to_pylist(), dtype=object) == "out"
    # Undirected edge key: the pair in byte order, so each edge is counted once.
    swap = _greater(local, peer)
    a = np.where(swap, peer, local)
    b = np.where(swap, local, peer)
    a_to_b = out != swap
    flows = t.column("flows").to_numpy().astype(np.int64)
    # The same flow may be reported from both ends when both are frontier nodes of one hop,
    # or again at the next hop: keep one report per (local, peer, direction, port).
    side = g.dense_ids(a, b, a_to_b.astype(np.int8), t.column("dst_port").to_numpy())
    _, first_idx = np.unique(side, return_index=True)
    first_idx.sort()
    a, b, a_to_b = a[first_idx], b[first_idx], a_to_b[first_idx]
    flows = flows[first_idx]
    byt = t.column("bytes").to_numpy().astype(np.int64)[first_idx]
    pkt = t.column("packets").to_numpy().astype(np.int64)[first_idx]
    port = t.column("dst_port").to_numpy().astype(np.int64)[first_idx]
    fst = t.column("first").cast(pa.int64()).to_numpy()[first_idx]
    lst = t.column("last").cast(pa.int64()).to_numpy()[first_idx]
    eid = g.dense_ids(a, b)
    order = np.argsort(eid, kind="stable")
    starts, _counts = g.segments(eid[order])
    so = order[starts]

    def total(v: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return np.add.reduceat(v[order], starts).astype(np.int64)

    fmin = np.minimum.reduceat(fst[order], starts)
    lmax = np.maximum.reduceat(lst[order], starts)
    ports = _top_ports(eid, port, flows)
    return pa.table({
        "a": addr_column(a[so]), "b": addr_column(b[so]),
        "flows": total(flows), "bytes": total(byt), "packets": total(pkt),
        "a_to_b": total(np.where(a_to_b, flows, 0)), "b_to_a": total(np.where(a_to_b, 0, flows)),
        "ports": [ports.get(int(e), "") for e in eid[so]],
        "first": pa.array(fmin, pa.int64()).cast(TS), "last": pa.array(lmax, pa.int64()).cast(TS),
    }).sort_by([("bytes", "descending")])


def _greater(a: npt.NDArray[np.void], b: npt.NDArray[np.void]) -> npt.NDArray[np.bool_]:
    """Bytewise ``a > b`` for 16-byte keys, as two big-endian 64-bit halves."""
    x = np.ascontiguousarray(a).view(">u8").reshape(-1, 2)
    y = np.ascontiguousarray(b).view(">u8").reshape(-1, 2)
    out: npt.NDArray[np.bool_] = (x[:, 0] > y[:, 0]) | ((x[:, 0] == y[:, 0]) & (x[:, 1] > y[:, 1]))
    return out


def _top_ports(eid: npt.NDArray[np.int64], port: npt.NDArray[np.int64],
               flows: npt.NDArray[np.int64], n: int = 5) -> dict[int, str]:
    """The ``n`` destination ports carrying most flows on each edge, as text."""
    key = g.dense_ids(eid, port)
    tot = np.bincount(key, weights=flows)
    first = np.unique(key, return_index=True)[1]
    ke, kp = eid[first], port[first]
    kf = tot[np.arange(len(first))]
    order = np.lexsort((-kf, ke))
    out: dict[int, list[str]] = {}
    for e, p in zip(ke[order].tolist(), kp[order].tolist(), strict=True):
        lst = out.setdefault(e, [])
        if len(lst) < n:
            lst.append(str(p))
    return {e: " ".join(v) for e, v in out.items()}


def _nodes(node_hop: dict[bytes, int], degree: dict[bytes, int], hub: dict[bytes, str],
           unexpanded: dict[bytes, str], netclass: NetClassTable, edges: pa.Table) -> pa.Table:
    keys = np.array(list(node_hop), dtype=ADDR)
    flows: dict[bytes, int] = {}
    byts: dict[bytes, int] = {}
    neighbours: dict[bytes, set[bytes]] = {}
    for col, other in (("a", "b"), ("b", "a")):
        for addr, peer, f, b in zip(edges.column(col).to_pylist(), edges.column(other).to_pylist(),
                                    edges.column("flows").to_pylist(),
                                    edges.column("bytes").to_pylist(), strict=True):
            flows[addr] = flows.get(addr, 0) + f
            byts[addr] = byts.get(addr, 0) + b
            neighbours.setdefault(addr, set()).add(peer)
    raws = list(node_hop)
    # Nodes the walk did not expand (the last hop's) were never counted over the window: their
    # degree is what the graph shows of them, and why_leaf says so.
    measured = [r in degree for r in raws]
    why = [hub.get(r, unexpanded.get(r, "")) or
           ("" if m else "hop limit: degree counts this graph's edges only")
           for r, m in zip(raws, measured, strict=True)]
    return pa.table({
        "addr": addr_column(keys), "hop": [node_hop[r] for r in raws],
        "degree": pa.array([degree[r] if m else len(neighbours.get(r, ()))
                            for r, m in zip(raws, measured, strict=True)], pa.int64()),
        "hub": [r in hub for r in raws], "why_leaf": why,
        "class": netclass.lookup(keys), "flows": [flows.get(r, 0) for r in raws],
        "bytes": [byts.get(r, 0) for r in raws],
    }).sort_by([("hop", "ascending"), ("bytes", "descending")])
