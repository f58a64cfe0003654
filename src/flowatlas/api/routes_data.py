"""Flow data routes: flows, top, series, IP profile, peers."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse

from flowatlas.addresses import AddressError, Prefix, parse_prefix
from flowatlas.api.deps import AskedWindow, Credential, Format, Purpose, Since, Until
from flowatlas.api.errors import ERROR_RESPONSES
from flowatlas.api.render import enrichment_field, streamed, table_response
from flowatlas.atlas import Atlas
from flowatlas.engines.base import EngineError
from flowatlas.enrich import Enricher, enricher
from flowatlas.formats import iso, to_records
from flowatlas.formats.identity import with_identity
from flowatlas.governance.gate import Gate, GateError, Ticket
from flowatlas.query.model import MAX_LIMIT, AggregateQuery, QueryError, Selection
from flowatlas.query.window import Window, WindowError

_USER_ERRORS = (QueryError, AddressError, WindowError)


class Order(StrEnum):
    flows = "flows"
    bytes = "bytes"
    packets = "packets"


@contextlib.contextmanager
def answering(gate: Gate, ticket: Ticket) -> Iterator[None]:
    """Close the ticket with the outcome of the block: ok, a 400 for bad queries, or internal."""
    try:
        yield
    except _USER_ERRORS as exc:
        gate.close(ticket, "error:bad_query")
        raise GateError(400, "bad_query", ticket.scrub(str(exc))) from None
    except EngineError as exc:
        gate.close(ticket, "error:engine")
        raise GateError(503, "engine_unavailable", ticket.scrub(str(exc))) from None
    except BaseException:
        gate.close(ticket, "error:internal")
        raise
    gate.close(ticket)


def target(gate: Gate, cred: str | None, route: str, params: dict[str, Any], text: str) -> Prefix:
    try:
        return parse_prefix(text)
    except AddressError as exc:
        raise gate.reject(cred, route, params, 400, "bad_address", str(exc)) from None


def data_router(atlas: Atlas, gate: Gate) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["flows"], responses=ERROR_RESPONSES)

    def enrich() -> Enricher:
        return enricher(atlas.store.root)

    @r.get("/flows", summary="Matching flow records, newest first")
    def flows(
        cred: Credential,
        purpose: Purpose,
        asked: AskedWindow,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        format: Format = Format.json,
    ) -> Response:
        params = asked.params(limit=limit, format=format.value)
        ticket = asked.admit(gate, cred, "flows", params, purpose, rows=limit)
        if format is Format.json:
            with answering(gate, ticket):
                table = gate.disclose(ticket, atlas.flows(ticket.selection, limit))
            return table_response(table, "json", ticket.headers(), enrich=enrich())

        def produce() -> Iterator[pa.Table]:
            for batch in atlas.iter_flows(ticket.selection, limit):
                yield gate.disclose(ticket, pa.Table.from_batches([batch]))

        return streamed(
            produce, format.value, ticket.headers(), lambda outcome: gate.close(ticket, outcome),
            enrich(),
        )

    @r.get("/top", summary="Top values of a field (nfdump -s)")
    def top(
        cred: Credential,
        purpose: Purpose,
        asked: AskedWindow,
        by: Annotated[str, Query(max_length=100, pattern=r"^[A-Za-z_,]+$")] = "ip",
        order: Order = Order.flows,
        n: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10,
        estimate: bool = False,
        format: Format = Format.json,
    ) -> Response:
        params = asked.params(by=by, order=order.value, n=n, estimate=estimate,
                              format=format.value)
        ticket = asked.admit(gate, cred, "top", params, purpose, rows=n)
        with answering(gate, ticket):
            table = gate.disclose(ticket, atlas.top(ticket.selection, by, order.value, n, estimate))
        return table_response(table, format.value, ticket.headers(), enrich=enrich())

    @r.get("/series", summary="Flows, packets and bytes per time bin")
    def series(
        cred: Credential,
        purpose: Purpose,
        asked: AskedWindow,
        bin: Annotated[int, Query(ge=1, le=366 * 86_400)] = 3600,
        by: Annotated[str | None, Query(max_length=40, pattern=r"^[A-Za-z_]+$")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 1000,
        estimate: bool = False,
        format: Format = Format.json,
    ) -> Response:
        params = asked.params(bin=bin, by=by, limit=limit, estimate=estimate,
                              format=format.value)
        ticket = asked.admit(gate, cred, "series", params, purpose, rows=limit)
        with answering(gate, ticket):
            # The earliest `limit` bins (x groups): the response never passes its reservation.
            table = gate.disclose(
                ticket,
                atlas.aggregate(
                    AggregateQuery(
                        ticket.selection,
                        keys=(by,) if by else (),
                        order_by="bin",
                        limit=limit,
                        estimate=estimate,
                        bin_seconds=bin,
                        ascending=True,
                    )
                ),
            )
        headers = {**ticket.headers(), "X-Truncated": str(table.num_rows >= limit).lower()}
        return table_response(table, format.value, headers, enrich=enrich())

    # Peers first: a prefix has a slash, and the profile's path would swallow '/peers'.
    @r.get("/ip/{address:path}/peers", summary="Counterparts of one address or prefix")
    def ip_peers(
        cred: Credential,
        purpose: Purpose,
        address: Annotated[str, Path(max_length=64)],
        asked: AskedWindow,
        n: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        order: Order = Order.bytes,
        estimate: bool = False,
        format: Format = Format.json,
    ) -> Response:
        params = asked.params(address=address, n=n, order=order.value, estimate=estimate,
                              format=format.value)
        prefix = target(gate, cred, "peers", params, address)
        ticket = asked.admit(gate, cred, "peers", params, purpose, rows=n, targets=(prefix,))
        with answering(gate, ticket):
            from flowatlas.query.expr import AddrMatch, Direction, conjoin

            sel = ticket.selection
            anchor = ticket.targets[0]
            anchored = Selection(
                conjoin(AddrMatch(Direction.ANY, (anchor,)), sel.filter), sel.window, sel.scope
            )
            table = gate.disclose(
                ticket,
                atlas.aggregate(
                    AggregateQuery(
                        anchored,
                        keys=("peer",),
                        order_by=order.value,
                        limit=n,
                        estimate=estimate,
                        anchor=(anchor,),
                    )
                ),
            )
        return table_response(table, format.value, ticket.headers(), enrich=enrich())

    @r.get("/ip/{address:path}", summary="Profile of one address or prefix (1.2.3.0/24)")
    def ip_profile(
        cred: Credential,
        purpose: Purpose,
        address: Annotated[str, Path(max_length=64)],
        since: Since = None,
        until: Until = None,
        n: Annotated[int, Query(ge=1, le=1000)] = 10,
        estimate: bool = False,
    ) -> JSONResponse:
        params = {"address": address, "since": since, "until": until, "n": n, "estimate": estimate}
        prefix = target(gate, cred, "ip", params, address)
        ticket = gate.admit(
            cred,
            "ip",
            params,
            purpose=purpose,
            since=since,
            until=until,
            rows=_profile_rows(n),
            targets=(prefix,),
        )
        with answering(gate, ticket):
            profile = atlas.profile(
                ticket.targets[0],
                Selection(ticket.selection.filter, ticket.selection.window, ticket.selection.scope),
                n,
                estimate,
            )
            parts = {
                name: gate.disclose(ticket, getattr(profile, name))
                for name in ("totals", "peers", "local_ports", "peer_ports", "daily")
            }
        ident = enrich()
        body: dict[str, Any] = {
            "address": prefix.text,  # as asked: a pseudonym stays one
            "identity": _identity(ident, prefix, ticket.targets[0]),
            "seen": profile.seen,
            "first_seen": iso(profile.first_seen),
            "last_seen": iso(profile.last_seen),
            **{name: to_records(with_identity(t, ident)) for name, t in parts.items()},
            "enrichment": enrichment_field(ident),
        }
        return JSONResponse(body, headers=ticket.headers())

    return r


def _identity(enrich: Enricher, asked: Prefix, clear: Prefix) -> dict[str, Any] | None:
    """The profiled address's own AS number, AS name and country (of a prefix: of its first
    address); None when the asker named a pseudonym: its identity is what the gate hides."""
    if (asked.low, asked.high) != (clear.low, clear.high):
        return None
    row = enrich.column(pa.array([clear.low], pa.binary(16))).table().to_pylist()[0]
    return {"asn": row["asn"], "as_name": row["as_name"], "country": row["country"]}


def _profile_rows(n: int) -> Callable[[Window], int]:
    """A profile's row reservation: three top-n tables, totals, and two rows per day."""

    def rows(window: Window) -> int:
        span = window.span
        days = 1 if span is None else math.ceil(span.total_seconds() / 86_400) + 1
        return 3 * n + 2 + 2 * days

    return rows
