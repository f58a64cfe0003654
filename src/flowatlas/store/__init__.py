"""The flow store: Parquet files per UTC day, published atomically through manifests."""

from flowatlas.store.flowstore import (
    BatchWriter,
    CompactReport,
    FlowStore,
    Snapshot,
    StoreError,
    StoreStats,
)

__all__ = ["BatchWriter", "CompactReport", "FlowStore", "Snapshot", "StoreError", "StoreStats"]
