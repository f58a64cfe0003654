"""Investigation routes over flowatlas.analytics (imported lazily: optional at start-up)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from flowatlas.addresses import AddressError, Prefix, parse_prefix
from flowatlas.api.deps import Credential, FilterText, Purpose, Since, Until
from flowatlas.api.errors import ERROR_RESPONSES
from flowatlas.api.routes_data import answering
from flowatlas.atlas import Atlas
from flowatlas.formats import to_records
from flowatlas.governance.gate import Gate

# Columns in which the analytics return addresses as text.
GRAPH_ADDRESS_TEXT = ("addr", "a", "b", "local", "peer")


def analytics_router(atlas: Atlas, gate: Gate) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["investigations"], responses=ERROR_RESPONSES)

    @r.get("/graph", summary="Peer graph within N hops of seed addresses")
    def graph(
        cred: Credential,
        purpose: Purpose,
        seed: Annotated[list[str], Query(min_length=1, max_length=50)],
        filter: FilterText = None,
        since: Since = None,
        until: Until = None,
        hops: Annotated[int, Query(ge=1, le=6)] = 1,
        max_degree: Annotated[int, Query(ge=1, le=100_000)] = 200,
        max_nodes: Annotated[int, Query(ge=1, le=1_000_000)] = 1000,
    ) -> JSONResponse:
        from flowatlas.analytics.graph import peer_graph

        params = {
            "seed": seed,
            "filter": filter,
            "since": since,
            "until": until,
            "hops": hops,
            "max_degree": max_degree,
            "max_nodes": max_nodes,
        }
        seeds: list[Prefix] = []
        for text in seed:
            try:
                seeds.append(parse_prefix(text))
            except AddressError as exc:
                raise gate.reject(cred, "graph", params, 400, "bad_address", str(exc)) from None
        # Nodes and edges both count against rows: a graph of max_nodes has at most that many
        # nodes, and its edges are cut to the same number.
        ticket = gate.admit(
            cred,
            "graph",
            params,
            purpose=purpose,
            filter=filter,
            since=since,
            until=until,
            rows=2 * max_nodes,
            targets=tuple(seeds),
            hops=hops,
        )
        with answering(gate, ticket):
            g = peer_graph(
                atlas,
                [p.text for p in seeds],
                ticket.selection,
                hops=hops,
                max_degree=max_degree,
                max_nodes=max_nodes,
            )
            edges = g.edges.slice(0, max_nodes)
            nodes = gate.disclose(ticket, g.nodes, GRAPH_ADDRESS_TEXT)
            edges = gate.disclose(ticket, edges, GRAPH_ADDRESS_TEXT)
        body = {
            "seeds": [p.text for p in seeds],
            "hops": hops,
            "max_degree": max_degree,
            "truncated": g.edges.num_rows > max_nodes,
            "nodes": to_records(nodes),
            "edges": to_records(edges),
        }
        return JSONResponse(body, headers=ticket.headers())

    return r
