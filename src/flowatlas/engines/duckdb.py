"""The embedded default: DuckDB reading the store's Parquet files in place."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import duckdb
import pyarrow as pa

from flowatlas.engines.base import EngineError
from flowatlas.engines.sql import SqlDialect, Statement
from flowatlas.query.model import AggregateQuery, FlowsQuery
from flowatlas.query.plan import day_windows
from flowatlas.schema import ADDRESS_COLUMNS, ADDRESS_TYPE, FLOW_SCHEMA
from flowatlas.store import FlowStore


class DuckDBEngine:
    name = "duckdb"

    def __init__(self, store: FlowStore, *, threads: int | None = None,
                 memory_limit: str = "1GB") -> None:
        self.store = store
        self.dialect = SqlDialect()
        # Aggregations over a heavy host can outgrow memory: let them spill instead of failing.
        self._con = duckdb.connect(config={
            "memory_limit": memory_limit,
            "temp_directory": tempfile.gettempdir() + "/flowatlas-duckdb",
            "preserve_insertion_order": False,
        })
        if threads:
            self._con.execute(f"SET threads = {int(threads)}")
        # Footers of files seen before stay parsed: lookups touch hundreds of files.
        self._con.execute("SET parquet_metadata_cache = true")
        self._con.register("flowatlas_empty", FLOW_SCHEMA.empty_table())
        self._local = threading.local()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        # One cursor per thread: a DuckDB connection must not be shared across threads.
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._con.cursor()
            cur.register("flowatlas_empty", FLOW_SCHEMA.empty_table())
            self._local.cursor = cur
        return cur

    def _relation(self, build: Any, query: Any) -> duckdb.DuckDBPyRelation:
        window = query.selection.window
        snapshot = self.store.snapshot(window.since, window.until)
        st: Statement = build(query, snapshot)
        return self._cursor().sql(st.sql, params=st.params)

    def _fetch(self, build: Any, query: Any) -> pa.Table:
        for attempt in (1, 2):
            try:
                return _typed(self._relation(build, query).to_arrow_table())
            except duckdb.IOException as exc:
                # A file retired between reading the manifest and opening it: read it again.
                if attempt == 2:
                    raise EngineError(f"reading the store failed: {exc}") from exc
        raise AssertionError("unreachable")

    def _slices(self, query: FlowsQuery) -> Iterator[FlowsQuery]:
        """The query cut into day groups in result order (see query.plan.day_windows)."""
        sel = query.selection
        days = self.store.snapshot(sel.window.since, sel.window.until).days
        for window in day_windows(days, sel.window, newest_first=not query.oldest_first):
            yield replace(query, selection=replace(sel, window=window))

    def flows(self, query: FlowsQuery) -> pa.Table:
        parts: list[pa.Table] = []
        remaining = query.limit
        for part in self._slices(query):
            table = self._fetch(self.dialect.flows, replace(part, limit=remaining))
            parts.append(table)
            remaining -= table.num_rows
            if remaining <= 0:
                break
        if not parts:
            return FLOW_SCHEMA.empty_table()
        return pa.concat_tables(parts)

    def iter_flows(self, query: FlowsQuery, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        remaining = query.limit
        for part in self._slices(query):
            reader = self._relation(self.dialect.flows, replace(part, limit=remaining))
            for batch in reader.to_arrow_reader(batch_rows):
                if batch.num_rows:
                    remaining -= batch.num_rows
                    yield _typed(pa.Table.from_batches([batch])).to_batches()[0]
            if remaining <= 0:
                return

    def aggregate(self, query: AggregateQuery) -> pa.Table:
        return self._fetch(self.dialect.aggregate, query)

    def sql(self, text: str, params: list[Any] | None = None) -> pa.Table:
        """Run trusted SQL (benchmarks, diagnostics); never for user text."""
        return self._cursor().sql(text, params=params).to_arrow_table()

    def close(self) -> None:
        self._con.close()


def _typed(table: pa.Table) -> pa.Table:
    """DuckDB hands 16-byte addresses back as variable binary; restore the canonical type."""
    for i, name in enumerate(table.column_names):
        if name in ADDRESS_COLUMNS and pa.types.is_binary(table.schema.field(i).type):
            table = table.set_column(i, name, table.column(i).cast(ADDRESS_TYPE))
    return table
