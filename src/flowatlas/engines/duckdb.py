"""The embedded default: DuckDB reading the store's Parquet files in place."""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import duckdb
import pyarrow as pa

from flowatlas.addresses import Prefix
from flowatlas.engines.base import EngineError
from flowatlas.engines.sql import SqlDialect, Statement
from flowatlas.query.expr import Direction
from flowatlas.query.model import AggregateQuery, FlowsQuery
from flowatlas.query.plan import DayGroups, endpoint_hint
from flowatlas.query.window import Window
from flowatlas.schema import ADDRESS_COLUMNS, ADDRESS_TYPE, FLOW_SCHEMA
from flowatlas.store import FlowStore, Snapshot
from flowatlas.store.rowgroups import RowGroupIndex, TooBroad

PREREAD_MAX_GROUPS = 400
PREREAD_MAX_ROWS = 500_000
"""Above this many matching rows, DuckDB's own pruned scan streams better than a pre-read."""
PREREAD_CACHE_ROWS = 500_000


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
        # Footers of files seen before stay parsed: lookups touch hundreds of files. GLOBAL, or
        # the per-thread cursors would not see it (a 90-day lookup went from 53 to 180 ms).
        self._con.execute("SET GLOBAL parquet_metadata_cache = true")
        self._con.register("flowatlas_empty", FLOW_SCHEMA.empty_table())
        self._local = threading.local()
        self.index = RowGroupIndex()
        self._preread_cache: OrderedDict[tuple[tuple[str, ...], str, tuple[Prefix, ...]],
                                         pa.Table] = OrderedDict()
        self._preread_lock = threading.Lock()
        self._too_broad: set[tuple[tuple[str, ...], str, tuple[Prefix, ...]]] = set()
        _prefer_returning_allocator()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        # One cursor per thread: a DuckDB connection must not be shared across threads.
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._con.cursor()
            cur.register("flowatlas_empty", FLOW_SCHEMA.empty_table())
            self._local.cursor = cur
        return cur

    def _snapshot(self, query: Any) -> Snapshot:
        window = query.selection.window
        return self.store.snapshot(window.since, window.until)

    def _relation(self, build: Any, query: Any, snapshot: Snapshot,
                  dialect: SqlDialect | None = None) -> duckdb.DuckDBPyRelation:
        st: Statement = build(dialect or self.dialect, query, snapshot)
        return self._cursor().sql(st.sql, params=st.params)

    def _fetch(self, build: Any, query: Any) -> pa.Table:
        for attempt in (1, 2):
            views: dict[tuple[str, ...], str] = {}
            try:
                snapshot = self._snapshot(query)
                views = self._preread(query, snapshot)
                dialect = _PrereadDialect(views) if views else self.dialect
                return _typed(self._relation(build, query, snapshot, dialect).to_arrow_table())
            except (duckdb.IOException, FileNotFoundError) as exc:
                # A file retired between reading the manifest and opening it: read it again.
                if attempt == 2:
                    raise EngineError(f"reading the store failed: {exc}") from exc
            finally:
                for name in views.values():
                    self._cursor().unregister(name)
        raise AssertionError("unreachable")

    def _preread(self, query: Any, snapshot: Snapshot) -> dict[tuple[str, ...], str]:
        """For narrow address lookups, read the matching rows of the sorted runs directly.

        Returns the registered views that stand in for each run list in the SQL; empty when
        the lookup is broad (many matches) and a plain scan with statistics pruning is cheaper.
        """
        hint = endpoint_hint(query.selection.where)
        if hint is None:
            return {}
        wanted = []
        if hint.direction in (Direction.SRC, Direction.ANY):
            wanted.append((snapshot.by_src, "src_addr"))
        if hint.direction in (Direction.DST, Direction.ANY):
            wanted.append((snapshot.by_dst, "dst_addr"))
        views: dict[tuple[str, ...], str] = {}
        for paths, column in wanted:
            if not paths:
                continue
            table = self._matching_rows(tuple(paths), column, hint.prefixes)
            if table is None:
                for name in views.values():
                    self._cursor().unregister(name)
                return {}
            name = f"flowatlas_preread_{column}_{uuid.uuid4().hex}"
            self._cursor().register(name, table)
            views[tuple(paths)] = name
        return views

    def _matching_rows(self, paths: tuple[str, ...], column: str,
                       prefixes: tuple[Prefix, ...]) -> pa.Table | None:
        """Rows of the sorted runs whose ``column`` is in the prefixes; None when too many.

        Recent answers are kept: files never change under a name, so the same paths and
        prefixes give the same rows, and a profile asks five questions of the same rows.
        """
        key = (paths, column, prefixes)
        with self._preread_lock:
            hit = self._preread_cache.get(key)
            if hit is not None:
                self._preread_cache.move_to_end(key)
                return hit
            if key in self._too_broad:
                return None
        cands = self.index.candidates(paths, column, prefixes)
        try:
            if cands.count > PREREAD_MAX_GROUPS:
                raise TooBroad(f"{cands.count} row groups")
            table = self.index.read(cands, column, prefixes, PREREAD_MAX_ROWS)
        except TooBroad:
            with self._preread_lock:
                if len(self._too_broad) > 10_000:
                    self._too_broad.clear()
                self._too_broad.add(key)
            return None
        with self._preread_lock:
            self._preread_cache[key] = table
            while sum(t.num_rows for t in self._preread_cache.values()) > PREREAD_CACHE_ROWS:
                self._preread_cache.popitem(last=False)
        return table

    def _groups(self, query: FlowsQuery) -> DayGroups:
        sel = query.selection
        days = self.store.snapshot(sel.window.since, sel.window.until).days
        return DayGroups(days, sel.window, not query.oldest_first, query.limit)

    def _part(self, query: FlowsQuery, window: Window, limit: int) -> FlowsQuery:
        return replace(query, selection=replace(query.selection, window=window), limit=limit)

    def flows(self, query: FlowsQuery) -> pa.Table:
        parts: list[pa.Table] = []
        groups = self._groups(query)
        for window in groups:
            table = self._fetch(SqlDialect.flows, self._part(query, window, groups.remaining))
            parts.append(table)
            groups.took(table.num_rows)
        if not parts:
            return FLOW_SCHEMA.empty_table()
        return pa.concat_tables(parts)

    def iter_flows(self, query: FlowsQuery, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        groups = self._groups(query)
        for window in groups:
            part = self._part(query, window, groups.remaining)
            got = 0
            reader = self._relation(SqlDialect.flows, part, self._snapshot(part))
            for batch in reader.to_arrow_reader(batch_rows):
                if batch.num_rows:
                    got += batch.num_rows
                    yield _typed(pa.Table.from_batches([batch])).to_batches()[0]
            groups.took(got)

    def aggregate(self, query: AggregateQuery) -> pa.Table:
        return self._fetch(SqlDialect.aggregate, query)

    def sql(self, text: str, params: list[Any] | None = None) -> pa.Table:
        """Run trusted SQL (benchmarks, diagnostics); never for user text."""
        return self._cursor().sql(text, params=params).to_arrow_table()

    def close(self) -> None:
        self._con.close()


def _prefer_returning_allocator() -> None:
    """Use an Arrow allocator that gives freed memory back, unless the user chose one.

    Arrow's default (mimalloc) keeps freed pages: in the 100M-flow lookup benchmark it held the
    engine's resident memory about 130 MiB higher than jemalloc, for no speed gain.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except (NotImplementedError, pa.ArrowNotImplementedError):
        pa.set_memory_pool(pa.system_memory_pool())


class _PrereadDialect(SqlDialect):
    """Reads pre-selected rows (registered Arrow tables) in place of some run lists."""

    def __init__(self, views: dict[tuple[str, ...], str]) -> None:
        self.views = views

    def read_files(self, st: Statement, paths: Sequence[str]) -> str:
        view = self.views.get(tuple(paths))
        return view if view is not None else super().read_files(st, paths)


def _typed(table: pa.Table) -> pa.Table:
    """DuckDB hands 16-byte addresses back as variable binary; restore the canonical type."""
    for i, name in enumerate(table.column_names):
        if name in ADDRESS_COLUMNS and pa.types.is_binary(table.schema.field(i).type):
            table = table.set_column(i, name, table.column(i).cast(ADDRESS_TYPE))
    return table
