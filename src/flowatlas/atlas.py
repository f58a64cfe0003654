"""Atlas: the core object every interface drives (CLI, HTTP API, web, analytics).

It owns a store and an engine and answers in Arrow tables. Interfaces parse their input into
the query model through :meth:`Atlas.select`, call one method, and render the result.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from flowatlas.addresses import Prefix, parse_prefix, prefix_texts
from flowatlas.engines.base import Engine
from flowatlas.query.expr import ALL, AddrMatch, Direction, Expr, conjoin
from flowatlas.query.filter import parse_filter
from flowatlas.query.model import RATES, AggregateQuery, FlowsQuery, Selection, parse_stat
from flowatlas.query.window import Window
from flowatlas.store import FlowStore


@dataclass
class Profile:
    """Everything known about one address (or prefix) over a window."""

    address: str
    totals: pa.Table
    peers: pa.Table
    local_ports: pa.Table
    peer_ports: pa.Table
    daily: pa.Table

    @property
    def seen(self) -> bool:
        return bool(self.totals.num_rows > 0)

    @property
    def first_seen(self) -> object:
        return pc.min(self.totals.column("first")).as_py() if self.seen else None

    @property
    def last_seen(self) -> object:
        return pc.max(self.totals.column("last")).as_py() if self.seen else None


class Atlas:
    def __init__(self, store: FlowStore | str | os.PathLike[str], engine: Engine | None = None,
                 *, create: bool = False) -> None:
        self.store = store if isinstance(store, FlowStore) else FlowStore(Path(store), create=create)
        if engine is None:
            from flowatlas.engines.duckdb import DuckDBEngine

            engine = DuckDBEngine(self.store)
        self.engine = engine

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> Atlas:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- building selections ----------------------------------------------------------------

    @staticmethod
    def select(filter: str | Expr | None = None, window: Window | None = None,
               scope: Expr = ALL) -> Selection:
        """A selection from filter text (nfdump syntax) or an expression tree."""
        expr = parse_filter(filter) if isinstance(filter, str) or filter is None else filter
        return Selection(expr, window or Window(), scope)

    # -- queries ----------------------------------------------------------------------------

    def flows(self, selection: Selection, limit: int = 100, oldest_first: bool = False) -> pa.Table:
        return self.engine.flows(FlowsQuery(selection, limit, oldest_first))

    def iter_flows(self, selection: Selection, limit: int, batch_rows: int = 65_536, *,
                   oldest_first: bool = False) -> Iterator[pa.RecordBatch]:
        return self.engine.iter_flows(FlowsQuery(selection, limit, oldest_first), batch_rows)

    def top(self, selection: Selection, by: str = "ip", order: str = "flows", n: int | None = 10,
            estimate: bool = False, *, shares: bool = False, rates: bool = False,
            distinct: tuple[str, ...] = (), ascending: bool = False) -> pa.Table:
        """nfdump ``-s by/order``: the top ``n`` values of a field (ip/port/as count both ends).

        ``by`` is a statistic as nfdump and SiLK write it (:func:`parse_stat`): ``ip``,
        ``srcip,dstport``, ``ip/bytes``, ``ip/24/48``; an order in it wins over ``order``.
        Keys rolled up to prefixes come back as prefix text (``10.1.2.0/24``).
        """
        spec = parse_stat(by)
        order = spec.order or order
        table = self.engine.aggregate(AggregateQuery(
            selection, keys=spec.keys, order_by=order, limit=n, estimate=estimate,
            rollup=spec.rollup, rates=rates or order in RATES, shares=shares,
            distinct=distinct, ascending=ascending))
        for key, v4, v6 in spec.rollup:
            table = table.set_column(table.column_names.index(key), key,
                                     prefix_texts(table.column(key), v4, v6))
        return table

    def series(self, selection: Selection, bin_seconds: int = 3600, by: str | None = None,
               estimate: bool = False) -> pa.Table:
        """Flows, packets and bytes per time bin (optionally split by a field), oldest first."""
        keys = (by,) if by else ()
        return self.engine.aggregate(
            AggregateQuery(selection, keys=keys, order_by="bin", limit=None, estimate=estimate,
                           bin_seconds=bin_seconds, ascending=True)
        )

    def aggregate(self, query: AggregateQuery) -> pa.Table:
        return self.engine.aggregate(query)

    def profile(self, address: str | Prefix, selection: Selection | None = None, n: int = 10,
                estimate: bool = False) -> Profile:
        """First/last seen, totals in and out, top peers and ports, per-day activity."""
        prefix = address if isinstance(address, Prefix) else parse_prefix(address)
        base = selection or Selection()
        sel = Selection(conjoin(AddrMatch(Direction.ANY, (prefix,)), base.filter),
                        base.window, base.scope)

        def agg(keys: tuple[str, ...], limit: int | None = n, order: str = "flows",
                bin_seconds: int | None = None) -> pa.Table:
            return self.engine.aggregate(AggregateQuery(
                sel, keys=keys, order_by=order, limit=limit, estimate=estimate,
                bin_seconds=bin_seconds, anchor=(prefix,), ascending=bin_seconds is not None,
            ))

        return Profile(
            address=prefix.text,
            totals=agg(("direction",), limit=None),
            peers=agg(("peer",), order="bytes"),
            local_ports=agg(("local_port",)),
            peer_ports=agg(("peer_port",)),
            daily=agg(("direction",), limit=None, order="bin", bin_seconds=86_400),
        )
