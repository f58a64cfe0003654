"""Opt-outs applied where collected flows enter the store, so opted-out flows are never stored.

The collector exposes no filter hook, and its decoder's entry points are being reshaped, so
the filter sits at the stable boundary instead: the collector writes every decoded batch through
``store.writer(...).write``; the store handed to it opens writers that drop opted-out flows
first (before buffering, storage or any pseudonymisation).
"""

from __future__ import annotations

import os

import pyarrow as pa

from flowatlas.governance.optout import IngestFilter
from flowatlas.store import FlowStore
from flowatlas.store.flowstore import BatchWriter


class OptOutWriter(BatchWriter):
    """A batch writer that removes opted-out flows from each batch it is given."""

    def __init__(
        self, store: FlowStore, ingest_filter: IngestFilter, *, max_rows: int, max_seconds: float
    ) -> None:
        super().__init__(store, max_rows=max_rows, max_seconds=max_seconds)
        self.ingest_filter = ingest_filter

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        super().write(self.ingest_filter(batch))


class OptOutStore(FlowStore):
    """The store as a collector sees it: every writer it opens applies the opt-outs."""

    def __init__(self, root: str | os.PathLike[str], ingest_filter: IngestFilter) -> None:
        super().__init__(root)
        self.ingest_filter = ingest_filter

    def writer(self, *, max_rows: int = 500_000, max_seconds: float = 5.0) -> BatchWriter:
        return OptOutWriter(self, self.ingest_filter, max_rows=max_rows, max_seconds=max_seconds)
