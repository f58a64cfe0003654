"""The stages of the ingest pipeline, each vectorised over one Arrow table.

A stage takes a table in the canonical schema (``schema.FLOW_SCHEMA``) and returns the rows it
keeps, possibly with columns rewritten; every row it removes goes through
:meth:`DropCounts.drop` with a reason, so what was dropped, why and from which exporter is
always counted. No stage loops over rows in Python.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from flowatlas.schema import HOLDABLE_END_US, HOLDABLE_MIN_US

if TYPE_CHECKING:
    from flowatlas.governance.optout import IngestFilter

Mask = npt.NDArray[np.bool_]

# Drop reasons (also the keys of the counts in the collector's status and import reports).
TIME_UNHOLDABLE = "time_unholdable"
TIME_TOO_OLD = "time_too_old"
TIME_IN_FUTURE = "time_in_future"
OPTED_OUT = "opted_out"
REASONS = (TIME_UNHOLDABLE, TIME_TOO_OLD, TIME_IN_FUTURE, OPTED_OUT)

DropListener = Callable[[bytes, str, int], None]
"""Called with (exporter as 16 bytes, reason, rows) for every drop."""


class DropCounts:
    """Rows dropped by reason, in total and per exporter."""

    def __init__(self) -> None:
        self.by_reason: Counter[str] = Counter()
        self.by_exporter: dict[bytes, Counter[str]] = {}
        self.normalised: Counter[str] = Counter()
        """Rows a stage rewrote rather than dropped (for example a sampling rate of 0)."""
        self.listeners: list[DropListener] = []

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def drop(self, table: pa.Table, mask: Mask, reason: str) -> pa.Table:
        """Remove the rows where ``mask`` is true, counting them under ``reason``."""
        n = int(np.count_nonzero(mask))
        if not n:
            return table
        self.by_reason[reason] += n
        # Drops are rare: counting them per exporter is cheap next to the filter itself.
        counts = pc.value_counts(table.column("exporter").filter(pa.array(mask)))
        for exporter, count in zip(counts.field("values").to_pylist(),
                                   counts.field("counts").to_pylist(), strict=True):
            key = bytes(exporter)
            self.by_exporter.setdefault(key, Counter())[reason] += int(count)
            for listener in self.listeners:
                listener(key, reason, int(count))
        return table.filter(pa.array(~mask))

    def as_dict(self) -> dict[str, int]:
        return dict(self.by_reason)


class Stage(Protocol):
    """One step in front of the store: returns the rows kept (and counts what it drops)."""

    name: str

    def __call__(self, table: pa.Table, drops: DropCounts) -> pa.Table: ...


def _micros(table: pa.Table, column: str) -> npt.NDArray[np.int64]:
    values: npt.NDArray[np.int64] = np.asarray(
        table.column(column).cast(pa.int64()).to_numpy(), dtype=np.int64)
    return values


class PlausibilityStage:
    """Values the store cannot hold, and times outside the plausible window.

    ``past_seconds`` behind and ``future_seconds`` ahead of ``clock()`` (None: no limit on that
    side). A flow dated far from the clock is an exporter's bug or an attack, not traffic: one
    hostile exporter otherwise creates a day directory per year from 0034 to 9999.
    """

    name = "plausibility"

    def __init__(self, past_seconds: float | None, future_seconds: float | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.past_seconds = past_seconds
        self.future_seconds = future_seconds
        self.clock = clock

    def __call__(self, table: pa.Table, drops: DropCounts) -> pa.Table:
        if not table.num_rows:
            return table
        start, end = _micros(table, "time_start"), _micros(table, "time_end")
        unholdable = ((start < HOLDABLE_MIN_US) | (start >= HOLDABLE_END_US)
                      | (end < HOLDABLE_MIN_US) | (end >= HOLDABLE_END_US))
        if unholdable.any():
            table = drops.drop(table, unholdable, TIME_UNHOLDABLE)
            start, end = start[~unholdable], end[~unholdable]
        now_us = int(self.clock() * 1e6)
        if self.past_seconds is not None:
            old = start < now_us - int(self.past_seconds * 1e6)
            if old.any():
                table = drops.drop(table, old, TIME_TOO_OLD)
                start, end = start[~old], end[~old]
        if self.future_seconds is not None:
            limit = now_us + int(self.future_seconds * 1e6)
            ahead = (start > limit) | (end > limit)
            table = drops.drop(table, ahead, TIME_IN_FUTURE)
        return table


class OptOutStage:
    """Flows of opted-out prefixes and ASNs (governance/optout.py) never reach the store.

    The control plane is opened once its file exists (looked for at most once a second), so a
    store without governance needs none and an opt-out added later still applies.
    """

    name = "optout"

    def __init__(self, store_root: str | os.PathLike[str], refresh_seconds: float = 1.0) -> None:
        self.root = Path(store_root)
        self.refresh_seconds = refresh_seconds
        self._filter: IngestFilter | None = None
        self._looked = -float("inf")

    def _ingest_filter(self) -> IngestFilter | None:
        if self._filter is None and time.monotonic() - self._looked >= self.refresh_seconds:
            self._looked = time.monotonic()
            from flowatlas.governance.controlplane import FILENAME, ControlPlane
            from flowatlas.governance.optout import IngestFilter

            if (self.root / FILENAME).exists():
                self._filter = IngestFilter(ControlPlane.for_store(self.root),
                                            self.refresh_seconds)
        return self._filter

    def __call__(self, table: pa.Table, drops: DropCounts) -> pa.Table:
        ingest_filter = self._ingest_filter()
        if ingest_filter is None or not table.num_rows:
            return table
        return drops.drop(table, ingest_filter.opted_out(table), OPTED_OUT)


class SamplingStage:
    """Sampling rates as the store keeps them: 1 in N with N >= 1 ("unsampled as far as we
    know" is 1; an exporter or a file that says 0 means the same)."""

    name = "sampling"

    def __call__(self, table: pa.Table, drops: DropCounts) -> pa.Table:
        rate = table.column("sampling_rate")
        zero = pc.equal(rate, 0)
        n = int(pc.sum(zero).as_py() or 0)
        if not n:
            return table
        drops.normalised["sampling_rate_0"] += n
        fixed = pc.if_else(zero, pa.scalar(1, pa.uint32()), rate)
        return table.set_column(table.schema.get_field_index("sampling_rate"),
                                table.schema.field("sampling_rate"), fixed)
