"""The ingest pipeline's enrichment stage: AS numbers where the exporter sent none.

``src_as``/``dst_as`` an exporter filled in are kept as exported (its routing table knows its
own peers better than any public dataset); where it sent 0, the stage fills in the origin AS
of the address from the store's enricher. Countries and AS names are not stored: they are
derived when an answer is rendered, from the dataset of the day (docs/enrichment.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from flowatlas.enrich.lookup import enricher
from flowatlas.ingest.stages import DropCounts

ENDPOINTS = (("src_addr", "src_as"), ("dst_addr", "dst_as"))


class EnrichmentStage:
    name = "enrichment"

    def __init__(self, store_root: str | os.PathLike[str] | None) -> None:
        self.root = None if store_root is None else Path(store_root)

    def __call__(self, table: pa.Table, drops: DropCounts) -> pa.Table:
        enrich = enricher(self.root)
        if not enrich.datasets or not table.num_rows:
            return table
        for addr, as_field in ENDPOINTS:
            values = np.asarray(table.column(as_field).to_numpy(), dtype=np.uint32)
            todo = np.flatnonzero(values == 0)
            if not len(todo):
                continue
            column = table.column(addr)
            if len(todo) < table.num_rows:
                column = column.take(pa.array(todo))
            found = enrich.column(column).asn
            filled = found != 0
            if not filled.any():
                continue
            values = values.copy()
            values[todo[filled]] = found[filled]
            drops.normalised[f"{as_field}_enriched"] += int(filled.sum())
            i = table.schema.get_field_index(as_field)
            table = table.set_column(i, table.schema.field(as_field), pa.array(values, pa.uint32()))
        return table
