"""A row-group index over the store's endpoint-sorted runs, for narrow address lookups.

Runs are sorted by address, so each row group covers a narrow address range and its Parquet
statistics say which. Keeping those ranges as numpy arrays (read once per file; files are never
modified, only replaced under new names) lets a lookup find the handful of row groups that can
hold an address across hundreds of files with one vectorised comparison, then read just those.
A query engine still pays a fixed cost per file it opens; this path does not.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flowatlas.addresses import Prefix
from flowatlas.schema import ADDRESS_TYPE, FLOW_SCHEMA

MAX_CACHED_FILES = 4096


@dataclass(frozen=True)
class FileRanges:
    path: str
    metadata: pq.FileMetaData
    low: npt.NDArray[np.bytes_]
    high: npt.NDArray[np.bytes_]
    rows: npt.NDArray[np.int64]


@dataclass(frozen=True)
class Candidates:
    """Row groups whose address range overlaps the prefixes, by file."""

    groups: list[tuple[FileRanges, list[int]]]
    rows: int

    @property
    def count(self) -> int:
        return sum(len(g) for _, g in self.groups)


class TooBroad(Exception):
    """The lookup would read more than the caller allows; use a scan instead."""


class RowGroupIndex:
    def __init__(self, threads: int = 2) -> None:
        self._files: OrderedDict[tuple[str, str], FileRanges] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rowgroups")

    def ranges(self, path: str, column: str) -> FileRanges:
        key = (path, column)
        with self._lock:
            hit = self._files.get(key)
            if hit is not None:
                self._files.move_to_end(key)
                return hit
        md = pq.read_metadata(path)
        col = md.schema.to_arrow_schema().get_field_index(column)
        n = md.num_row_groups
        low = np.empty(n, dtype="S16")
        high = np.empty(n, dtype="S16")
        rows = np.empty(n, dtype=np.int64)
        for i in range(n):
            rg = md.row_group(i)
            stats = rg.column(col).statistics
            rows[i] = rg.num_rows
            if stats is None or not stats.has_min_max:
                low[i], high[i] = b"\x00" * 16, b"\xff" * 16
            else:
                low[i], high[i] = stats.min, stats.max
        entry = FileRanges(path, md, low, high, rows)
        with self._lock:
            self._files[key] = entry
            while len(self._files) > MAX_CACHED_FILES:
                self._files.popitem(last=False)
        return entry

    def candidates(self, paths: Sequence[str], column: str,
                   prefixes: Sequence[Prefix]) -> Candidates:
        groups: list[tuple[FileRanges, list[int]]] = []
        rows = 0
        # numpy's S16 comparison ignores trailing NUL bytes, which keeps the byte order of
        # equal-length strings, so it orders 16-byte addresses correctly.
        lows = np.array([p.low for p in prefixes], dtype="S16")
        highs = np.array([p.high for p in prefixes], dtype="S16")
        for path in paths:
            fr = self.ranges(path, column)
            hit = ((fr.low[:, None] <= highs[None, :]) & (fr.high[:, None] >= lows[None, :])).any(1)
            if hit.any():
                groups.append((fr, np.flatnonzero(hit).tolist()))
            rows += int(fr.rows[hit].sum())
        return Candidates(groups, rows)

    def read(self, candidates: Candidates, column: str, prefixes: Sequence[Prefix],
             max_rows: int) -> pa.Table:
        """The rows of the candidate row groups whose ``column`` lies in the prefixes.

        Reads the address column first and the whole row group only where it matches; raises
        :class:`TooBroad` when more than ``max_rows`` rows match.
        """
        def masked(item: tuple[FileRanges, list[int]]) -> tuple[FileRanges, list[int], pa.Array] | None:
            # A ParquetFile is not safe to share between threads: open one per read, reusing the
            # parsed footer.
            fr, groups = item
            pf = pq.ParquetFile(fr.path, metadata=fr.metadata)
            mask = _inside(pf.read_row_groups(groups, columns=[column]).column(0), prefixes)
            return (fr, groups, mask) if pc.any(mask).as_py() else None

        hits = [h for h in self._pool.map(masked, candidates.groups) if h is not None]
        matched = sum(int(pc.sum(mask).as_py() or 0) for _, _, mask in hits)
        if matched > max_rows:
            raise TooBroad(f"{matched} rows match")

        def rows_of(hit: tuple[FileRanges, list[int], pa.Array]) -> pa.Table:
            fr, groups, mask = hit
            pf = pq.ParquetFile(fr.path, metadata=fr.metadata)
            return pf.read_row_groups(groups).filter(mask)

        tables = list(self._pool.map(rows_of, hits))
        if not tables:
            return FLOW_SCHEMA.empty_table()
        return pa.concat_tables(t.cast(FLOW_SCHEMA) for t in tables)


def _inside(column: pa.ChunkedArray, prefixes: Sequence[Prefix]) -> pa.Array:
    mask: pa.Array | None = None
    for p in prefixes:
        low = pa.scalar(p.low, ADDRESS_TYPE)
        if p.is_single:
            m = pc.equal(column, low)
        else:
            m = pc.and_(pc.greater_equal(column, low),
                        pc.less_equal(column, pa.scalar(p.high, ADDRESS_TYPE)))
        mask = m if mask is None else pc.or_(mask, m)
    assert mask is not None
    return mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask
