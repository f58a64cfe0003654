"""What every engine offers the core: the query model in, Arrow tables out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import pyarrow as pa

from flowatlas.query.model import AggregateQuery, FlowsQuery


class EngineError(RuntimeError):
    """The engine failed to run a query (not the user's fault)."""


class Engine(Protocol):
    name: str

    def flows(self, query: FlowsQuery) -> pa.Table:
        """Matching records in the canonical schema, newest first."""
        ...

    def iter_flows(self, query: FlowsQuery, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        """The same records streamed in batches (large exports)."""
        ...

    def aggregate(self, query: AggregateQuery) -> pa.Table:
        """Keys, then flows, packets, bytes, first, last."""
        ...

    def close(self) -> None: ...
