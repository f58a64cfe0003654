"""Investigation routes over flowatlas.analytics: graph, beacons, victims, trace.

Each goes through the same gate as the flow routes (key, role, purpose, quotas, scope) and runs
on ``ticket.selection``, whose scope every analytics query carries. The analytics return
16-byte address columns, so ``gate.disclose`` scope-checks the rows that describe flows
(edges, pairs, peers, trace candidates) and pseudonymises every address column the same way
it does for flows; ``flowatlas.formats`` writes them as text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from flowatlas.addresses import AddressError, Prefix, parse_prefix
from flowatlas.analytics.frame import AnalyticsError
from flowatlas.api.deps import AskedWindow, Credential, FilterText, Purpose
from flowatlas.api.errors import ERROR_RESPONSES
from flowatlas.api.render import enrichment_field
from flowatlas.api.routes_data import answering
from flowatlas.atlas import Atlas
from flowatlas.enrich import Enricher, enricher
from flowatlas.formats import to_records
from flowatlas.formats.identity import with_identity
from flowatlas.formats.reports import trace_document, trace_tables
from flowatlas.governance.gate import Gate, Ticket
from flowatlas.query.model import QueryError
from flowatlas.query.window import WindowError, parse_time

Seeds = Annotated[list[str], Query(min_length=1, max_length=50)]


@contextlib.contextmanager
def investigating(gate: Gate, ticket: Ticket) -> Iterator[None]:
    """``answering`` plus the analytics' own input errors (no flows, bad address) as 400s."""
    with answering(gate, ticket):
        try:
            yield
        except AnalyticsError as exc:
            raise QueryError(str(exc)) from None


def analytics_router(atlas: Atlas, gate: Gate) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["investigations"], responses=ERROR_RESPONSES)

    def enrich() -> Enricher:
        return enricher(atlas.store.root)

    def prefixes(cred: str | None, route: str, params: dict[str, Any], texts: list[str]
                 ) -> tuple[Prefix, ...]:
        out = []
        for text in texts:
            try:
                out.append(parse_prefix(text))
            except AddressError as exc:
                raise gate.reject(cred, route, params, 400, "bad_address", str(exc)) from None
        return tuple(out)

    @r.get("/graph", summary="Peer graph within N hops of seed addresses")
    def graph(
        cred: Credential,
        purpose: Purpose,
        seed: Seeds,
        asked: AskedWindow,
        hops: Annotated[int, Query(ge=1, le=6)] = 1,
        max_degree: Annotated[int, Query(ge=1, le=100_000)] = 200,
        max_nodes: Annotated[int, Query(ge=1, le=1_000_000)] = 1000,
    ) -> JSONResponse:
        from flowatlas.analytics.graph import peer_graph

        params = asked.params(seed=seed, hops=hops, max_degree=max_degree, max_nodes=max_nodes)
        seeds = prefixes(cred, "graph", params, seed)
        # Nodes and edges both count against rows: a graph of max_nodes has at most that many
        # nodes, and its edges are cut to the same number.
        ticket = asked.admit(gate, cred, "graph", params, purpose, rows=2 * max_nodes,
                             targets=seeds, hops=hops)
        with investigating(gate, ticket):
            g = peer_graph(
                atlas,
                [p.text for p in ticket.targets],
                ticket.selection,
                hops=hops,
                max_degree=max_degree,
                max_nodes=max_nodes,
                netclass=gate.class_table(),
            )
            edges = g.edges.slice(0, max_nodes)
            nodes = gate.disclose(ticket, g.nodes)
            edges = gate.disclose(ticket, edges, endpoints=("a", "b"))
        body = {
            "seeds": [p.text for p in seeds],
            "hops": hops,
            "max_degree": max_degree,
            "truncated": g.edges.num_rows > max_nodes,
            "nodes": to_records(with_identity(nodes, enrich())),
            "edges": to_records(with_identity(edges, enrich())),
            "enrichment": enrichment_field(enrich()),
        }
        return JSONResponse(body, headers=ticket.headers())

    @r.get("/beacons", summary="(source, destination, port) pairs ranked by periodic contact")
    def beacons(
        cred: Credential,
        purpose: Purpose,
        asked: AskedWindow,
        n: Annotated[int, Query(ge=1, le=10_000)] = 100,
        min_contacts: Annotated[int, Query(ge=3, le=100_000)] = 4,
        min_score: Annotated[float, Query(ge=0.0, le=1.0)] = 0.0,
    ) -> JSONResponse:
        from flowatlas.analytics.beacons import find_beacons

        params = asked.params(n=n, min_contacts=min_contacts, min_score=min_score)
        ticket = asked.admit(gate, cred, "beacons", params, purpose, rows=n)
        with investigating(gate, ticket):
            report = find_beacons(
                atlas, ticket.selection, min_contacts=min_contacts, top=n, min_score=min_score
            )
            pairs = gate.disclose(ticket, report.to_table())
        body = {"window_s": report.window_s, "flows": report.flows,
                "pairs": to_records(with_identity(pairs, enrich())),
                "enrichment": enrichment_field(enrich())}
        return JSONResponse(body, headers=ticket.headers())

    @r.get("/victims", summary="Peers of C2 servers, labelled with their evidence")
    def victims(
        cred: Credential,
        purpose: Purpose,
        c2: Seeds,
        asked: AskedWindow,
        n: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        fanout: bool = True,
    ) -> JSONResponse:
        from flowatlas.analytics.victims import classify_peers

        params = asked.params(c2=c2, n=n, fanout=fanout)
        c2s = prefixes(cred, "victims", params, c2)
        ticket = asked.admit(gate, cred, "victims", params, purpose, rows=n, targets=c2s)
        with investigating(gate, ticket):
            report = classify_peers(
                atlas, [p.text for p in ticket.targets], ticket.selection, netclass=gate.class_table(),
                fanout=fanout,
            )
            peers = report.peers.slice(0, n)
            peers = gate.disclose(ticket, peers, endpoints=("peer", "c2"))
        body = {
            "c2": [ticket.scrub(c) for c in report.c2],
            "flows": report.flows,
            "truncated": report.peers.num_rows > n,
            "peers": to_records(with_identity(peers, enrich())),
            "enrichment": enrichment_field(enrich()),
        }
        return JSONResponse(body, headers=ticket.headers())

    @r.get("/trace", summary="Walk a session back through relays towards its origin")
    def trace_route(
        cred: Credential,
        purpose: Purpose,
        to: Annotated[str, Query(max_length=64, description="the target address")],
        at: Annotated[str, Query(max_length=64, description="when (ISO time, epoch, or 2h)")],
        from_relay: Annotated[str | None, Query(max_length=64)] = None,
        filter: FilterText = None,
        hops: Annotated[int, Query(ge=1, le=64, description="relay hops (quota max_hops)")] = 2,
        beam: Annotated[int, Query(ge=1, le=10)] = 3,
    ) -> JSONResponse:
        from flowatlas.analytics.trace import TraceParams, trace

        params = {
            "to": to,
            "at": at,
            "from_relay": from_relay,
            "filter": filter,
            "hops": hops,
            "beam": beam,
        }
        named = prefixes(cred, "trace", params, [to, *([from_relay] if from_relay else [])])
        if not all(p.is_single for p in named):
            raise gate.reject(cred, "trace", params, 400, "bad_address", "trace needs addresses")
        tp = TraceParams(max_hops=hops, beam=beam)
        try:
            when = parse_time(at, datetime.fromtimestamp(gate.clock(), tz=UTC))
        except WindowError as exc:
            raise gate.reject(cred, "trace", params, 400, "bad_window", str(exc)) from None
        # The window the trace may read (its sessions' full spans around ``at``), for quotas.
        reach = timedelta(seconds=tp.search_s + tp.max_session_s)
        # A path of hops + 2 nodes, up to 5 candidates per hop, 4 alternatives of that length.
        rows = 5 * (hops + 2) + 5 * hops
        ticket = gate.admit(
            cred, "trace", params, purpose=purpose, filter=filter,
            since=(when - reach).isoformat(), until=(when + reach).isoformat(), rows=rows,
            targets=named, hops=hops,
        )
        with investigating(gate, ticket):
            clear = [p.text for p in ticket.targets]
            report = trace(atlas, clear[0], when, from_relay=clear[1] if from_relay else None,
                           params=tp, scope=ticket.selection)
            # The one rendering of a trace (as the CLI's), disclosed table by table.
            tables = {name: with_identity(gate.disclose(ticket, t), enrich())
                      for name, t in trace_tables(report).items()}
        body = {**trace_document(report, tables, target=to, scrub=ticket.scrub),
                "enrichment": enrichment_field(enrich())}
        return JSONResponse(body, headers=ticket.headers())

    return r
