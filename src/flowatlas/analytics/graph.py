"""Peer graph: who talked to whom around seed addresses, hop by hop.

Each hop is one aggregate anchored at the frontier (split into chunks the planner can prune),
grouped by (local, peer, direction, destination port). Nodes whose fan-in/fan-out exceeds a cap,
or that a network class table calls infrastructure (CDN, resolvers), are hubs: they stay in the
graph as leaves with their degree recorded, but are not expanded, so one CDN does not pull in
half the internet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from flowatlas.analytics import groups as g
from flowatlas.analytics.frame import ADDR, AnalyticsError, addr_keys, addr_text, key_prefix
from flowatlas.analytics.netclass import INFRASTRUCTURE, NetClassTable
from flowatlas.atlas import Atlas
from flowatlas.query.expr import AddrMatch, Direction, conjoin
from flowatlas.query.model import AggregateQuery, Selection
from flowatlas.query.plan import MAX_HINT_PREFIXES

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
               max_nodes: int = 20_000) -> PeerGraph:
    """The graph of peers within ``hops`` of ``seeds`` over the selection's window."""
    if not 1 <= hops <= 6:
        raise AnalyticsError(f"--hops {hops}: must be 1..6")
    if max_degree < 1:
        raise AnalyticsError("--max-degree must be >= 1")
    from flowatlas.analytics.frame import addr_key

    seed_keys = np.unique(np.array([addr_key(s) for s in seeds], dtype=ADDR))
    base = selection or Selection()
    netclass = netclass or NetClassTable.empty()
    node_hop: dict[bytes, int] = {k.tobytes(): 0 for k in seed_keys}
    degree: dict[bytes, int] = {}
    hub_reason: dict[bytes, str] = {}
    edge_parts: list[pa.Table] = []
    frontier = list(seed_keys)
    for hop in range(1, hops + 1):
        if not frontier:
            break
        rows = _edges_of(atlas, base, frontier)
        if rows.num_rows == 0:
            continue
        local = addr_keys(rows.column("local"))
        peer = addr_keys(rows.column("peer"))
        lid = g.dense_ids(local)
        pair = g.dense_ids(local, peer)
        # Distinct peers per local node: its fan-in plus fan-out.
        uniq_pairs = np.unique(pair, return_index=True)[1]
        deg = np.bincount(lid[uniq_pairs], minlength=int(lid.max()) + 1)
        ulocal = local[np.unique(lid, return_index=True)[1]]
        classes = netclass.lookup(ulocal)
        expanded = np.ones(len(ulocal), dtype=bool)
        for i, key in enumerate(ulocal):
            raw = key.tobytes()
            degree[raw] = int(deg[i])
            if node_hop.get(raw) == 0:
                continue  # seeds are always expanded: the user asked about them
            if deg[i] > max_degree:
                hub_reason[raw] = f"degree {int(deg[i])} > {max_degree}"
            elif classes[i] in INFRASTRUCTURE:
                hub_reason[raw] = f"network class {classes[i]}"
            if raw in hub_reason:
                expanded[i] = False
        # A hub keeps only its edges to nodes already in the graph.
        known = np.array([p.tobytes() in node_hop for p in peer], dtype=bool)
        keep = expanded[lid] | known
        rows = rows.filter(pa.array(keep))
        peer = peer[keep]
        new = []
        for key in np.unique(peer):
            raw = key.tobytes()
            if raw not in node_hop and len(node_hop) < max_nodes:
                node_hop[raw] = hop
                new.append(key)
        if len(node_hop) >= max_nodes:
            rows = rows.filter(pa.array([p.tobytes() in node_hop for p in peer], type=pa.bool_()))
        edge_parts.append(rows)
        frontier = new
    edges = _merge_edges(edge_parts)
    nodes = _nodes(node_hop, degree, hub_reason, netclass, edges)
    return PeerGraph(nodes, edges, [str(s) for s in seeds], hops, max_degree)


def _edges_of(atlas: Atlas, base: Selection, frontier: list[np.void]) -> pa.Table:
    parts = []
    prefixes = [key_prefix(k) for k in frontier]
    for i in range(0, len(prefixes), MAX_HINT_PREFIXES):
        chunk = tuple(prefixes[i:i + MAX_HINT_PREFIXES])
        sel = Selection(conjoin(AddrMatch(Direction.ANY, chunk), base.filter), base.window,
                        base.scope)
        parts.append(atlas.aggregate(AggregateQuery(
            sel, keys=("local", "peer", "direction", "dst_port"), limit=None, anchor=chunk)))
    table = pa.concat_tables(parts) if parts else pa.table({})
    if parts and len(parts) > 1:
        # A flow between two chunks is seen from both; keep each (local, peer) from one side.
        pass
    return table


def _merge_edges(parts: list[pa.Table]) -> pa.Table:
    empty = pa.table({"a": pa.array([], pa.string()), "b": pa.array([], pa.string()),
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
    swap = np.array([a.tobytes() > b.tobytes() for a, b in zip(local, peer, strict=True)], dtype=bool)
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
        "a": addr_text(a[so]), "b": addr_text(b[so]),
        "flows": total(flows), "bytes": total(byt), "packets": total(pkt),
        "a_to_b": total(np.where(a_to_b, flows, 0)), "b_to_a": total(np.where(a_to_b, 0, flows)),
        "ports": [ports.get(int(e), "") for e in eid[so]],
        "first": pa.array(fmin, pa.int64()).cast(TS), "last": pa.array(lmax, pa.int64()).cast(TS),
    }).sort_by([("bytes", "descending")])


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
           netclass: NetClassTable, edges: pa.Table) -> pa.Table:
    keys = np.array(list(node_hop), dtype=ADDR)
    text = addr_text(keys)
    flows: dict[str, int] = {}
    byts: dict[str, int] = {}
    for col in ("a", "b"):
        for addr, f, b in zip(edges.column(col).to_pylist(), edges.column("flows").to_pylist(),
                              edges.column("bytes").to_pylist(), strict=True):
            flows[addr] = flows.get(addr, 0) + f
            byts[addr] = byts.get(addr, 0) + b
    raws = list(node_hop)
    return pa.table({
        "addr": text, "hop": [node_hop[r] for r in raws],
        "degree": pa.array([degree.get(r) for r in raws], pa.int64()),
        "hub": [r in hub for r in raws], "why_leaf": [hub.get(r, "") for r in raws],
        "class": netclass.lookup(keys), "flows": [flows.get(t, 0) for t in text],
        "bytes": [byts.get(t, 0) for t in text],
    }).sort_by([("hop", "ascending"), ("bytes", "descending")])
