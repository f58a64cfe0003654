"""The chain of stages in front of the store, configured once for every producer.

Order (``STAGE_ORDER``), each a slot holding zero or more stages:

1. ``plausibility``: values the store cannot hold, and times outside the plausible window;
2. ``optout``: flows of opted-out prefixes and ASNs;
3. ``sampling``: sampling rates normalised (0 -> 1);
4. ``enrichment``: AS numbers the exporter left at 0, from the enrichment dataset
   (``enrich/stage.py``), after the drops so nothing is looked up for a flow that is not kept.

The collector runs the pipeline on its receive thread before buffering, the importers on each
parsed block, the simulator on each generated chunk. Drops are counted by reason in
:attr:`Pipeline.drops` (and reported to any listener, such as the collector's live status).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from flowatlas.ingest.stages import (
    DropCounts,
    OptOutStage,
    PlausibilityStage,
    SamplingStage,
    Stage,
)
from flowatlas.schema import conform
from flowatlas.settings import IngestSettings
from flowatlas.settings import load as load_settings
from flowatlas.store import FlowStore

PLAUSIBILITY = "plausibility"
OPTOUT = "optout"
SAMPLING = "sampling"
ENRICHMENT = "enrichment"
STAGE_ORDER = (PLAUSIBILITY, OPTOUT, SAMPLING, ENRICHMENT)

class Pipeline:
    """Run a table through every stage in order; count what each drops."""

    def __init__(self, stages: dict[str, list[Stage]] | None = None) -> None:
        self.slots: dict[str, list[Stage]] = {slot: [] for slot in STAGE_ORDER}
        for slot, members in (stages or {}).items():
            for stage in members:
                self.plug(slot, stage)
        self.drops = DropCounts()
        self.rows_in = 0
        self.rows_out = 0

    def plug(self, slot: str, stage: Stage) -> None:
        """Add ``stage`` at the end of ``slot`` (one of ``STAGE_ORDER``)."""
        if slot not in self.slots:
            raise ValueError(f"no ingest slot {slot!r}; slots: {', '.join(STAGE_ORDER)}")
        self.slots[slot].append(stage)

    @property
    def stages(self) -> list[Stage]:
        return [stage for slot in STAGE_ORDER for stage in self.slots[slot]]

    def __call__(self, batch: pa.RecordBatch | pa.Table) -> pa.Table:
        """The rows of ``batch`` to store, in the canonical schema."""
        table = conform(batch)
        self.rows_in += table.num_rows
        for stage in self.stages:
            if not table.num_rows:
                break
            table = stage(table, self.drops)
        self.rows_out += table.num_rows
        return table

    def append(self, store: FlowStore, batch: pa.RecordBatch | pa.Table) -> int:
        """Store what the pipeline keeps of ``batch``; returns the rows stored."""
        return store.append(self(batch))


def pipeline_for(store: FlowStore | str | os.PathLike[str],
                 settings: IngestSettings | None = None, *,
                 clock: Callable[[], float] = time.time, optouts: bool = True,
                 retention_days: int | None = None, enrich: bool = True) -> Pipeline:
    """The pipeline every producer writing into ``store`` uses.

    ``settings``: the ``ingest`` settings (default: as loaded for the store, docs/settings.md).
    ``clock``: the ingesting clock (the simulator passes its simulated end of time).
    ``retention_days``: instead of the store's ``store.retention_days``.
    ``enrich``: fill AS numbers the exporter left at 0 (docs/enrichment.md).
    """
    root = store.root if isinstance(store, FlowStore) else Path(store)
    if settings is None or retention_days is None:
        loaded = load_settings(root).settings
        settings = settings or loaded.ingest
        if retention_days is None:
            retention_days = (store.retention_days if isinstance(store, FlowStore)
                              else loaded.store.retention_days)
    past_days = settings.plausible_past_days or retention_days
    pipeline = Pipeline()
    pipeline.plug(PLAUSIBILITY, PlausibilityStage(
        None if past_days is None else past_days * 86_400.0,
        settings.plausible_future_seconds, clock))
    if optouts:
        pipeline.plug(OPTOUT, OptOutStage(root))
    pipeline.plug(SAMPLING, SamplingStage())
    if enrich:
        from flowatlas.enrich.stage import EnrichmentStage

        pipeline.plug(ENRICHMENT, EnrichmentStage(root))
    return pipeline
