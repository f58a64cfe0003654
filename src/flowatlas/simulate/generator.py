"""Streaming orchestration: world, planted scenarios, then time-ordered chunks of flows.

Scenarios are small; they are built, observed and sampled once, up front, which completes the
ground truth before any flow is written. Background chunks are then generated one at a time
(each from its own seeded stream), observed, merged with the planted rows of the same time
slice, and yielded as FLOW_SCHEMA record batches, so memory stays flat whatever --flows is.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from flowatlas.addresses import unpack_many
from flowatlas.simulate.background import Background
from flowatlas.simulate.config import (
    STREAM_C2,
    STREAM_ENTERPRISE,
    STREAM_OBSERVE,
    STREAM_RELAYS,
    SimConfig,
    stream_rng,
)
from flowatlas.simulate.flows import Columns, size, sort_by_time, take, to_batch
from flowatlas.simulate.observe import observe
from flowatlas.simulate.scenarios.c2 import plant_c2, plant_researchers
from flowatlas.simulate.scenarios.enterprise import plant_enterprise
from flowatlas.simulate.scenarios.planted import Planted, iso
from flowatlas.simulate.scenarios.relays import hop_counts, plant_chain
from flowatlas.simulate.timeline import Timeline
from flowatlas.simulate.truth import GroundTruth
from flowatlas.simulate.world import build_world

Progress = Callable[[int, int], None]
"""Called with (chunks done, chunks in all)."""

_SCENARIO_INDEX = 1 << 30  # observation stream index of the planted rows, apart from chunks


class Simulation:
    """A seeded world: ``truth`` is complete on construction, ``batches()`` streams the flows."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.world = build_world(config)
        self.timeline = Timeline(config.start_us, config.end_us)
        self.background = Background(self.world, config, self.timeline)
        self.truth = GroundTruth(config=_config_dict(config), prefixes=self.world.prefix_rows())
        self.truth.exporters = [
            {"address": a, "source_id": i, "sampling_rate": int(r)}
            for i, (a, r) in enumerate(zip(unpack_many(list(
                self.world.exporter_addr.view(np.uint8).reshape(-1, 16).tobytes()[j:j + 16]
                for j in range(0, 16 * len(self.world.exporter_rate), 16))),
                self.world.exporter_rate, strict=True))
        ]
        self.planted = self._plant()
        self.truth.flows = {"planted_records": size(self.planted)}

    def _plant(self) -> Columns:
        cfg, world, planted = self.config, self.world, Planted()
        sc = cfg.scenarios
        if sc.c2:
            rng = stream_rng(cfg.seed, STREAM_C2)
            researchers, hosts = plant_researchers(world, rng, 2)
            for i in range(sc.c2):
                self.truth.c2.append(plant_c2(world, cfg, stream_rng(cfg.seed, STREAM_C2, i + 1),
                                              planted, i, researchers, hosts))
        if sc.relays:
            rng = stream_rng(cfg.seed, STREAM_RELAYS)
            for i, hops in enumerate(hop_counts(rng, sc.relays, sc.max_hops)):
                self.truth.relays.append(plant_chain(
                    world, cfg, stream_rng(cfg.seed, STREAM_RELAYS, i + 1), planted, i, hops))
        for i in range(sc.enterprise):
            self.truth.enterprise.append(plant_enterprise(
                world, cfg, stream_rng(cfg.seed, STREAM_ENTERPRISE, i), planted, i))
        cols, tags = planted.columns()
        keep = (cols["time_start"] >= cfg.start_us) & (cols["time_start"] < cfg.end_us)
        cols, tags = take(cols, np.flatnonzero(keep)), tags[keep]
        seen, index = observe(world, cols, stream_rng(cfg.seed, STREAM_OBSERVE, _SCENARIO_INDEX))
        planted.count(tags[index])
        ordered, _ = sort_by_time(seen)
        return ordered

    @property
    def chunks(self) -> int:
        return self.background.chunks()

    def chunk(self, index: int) -> pa.RecordBatch:
        """Chunk ``index``: its background slice (observed) plus the planted rows of that slice."""
        lo, hi = self.background.bounds(index)
        times = self.planted["time_start"]
        a = 0 if index == 0 else int(np.searchsorted(times, lo, side="left"))
        b = int(np.searchsorted(times, hi, side="left")) if index + 1 < self.chunks else len(times)
        planted = {name: col[a:b] for name, col in self.planted.items()}
        return to_batch(self.background.chunk(index, planted))

    def batches(self, progress: Progress | None = None) -> Iterator[pa.RecordBatch]:
        for i in range(self.chunks):
            yield self.chunk(i)
            if progress:
                progress(i + 1, self.chunks)


def _config_dict(config: SimConfig) -> dict[str, Any]:
    sc = config.scenarios
    return {
        "seed": config.seed, "flows": config.flows, "days": config.days,
        "start": iso(config.start_us), "end": iso(config.end_us),
        "sampling": list(config.sampling), "observe_share": config.observe_share,
        "exporters": config.exporters, "chunk_rows": config.chunk_rows,
        "scenarios": {k: getattr(sc, k) for k in sorted(vars(sc))},
    }


def simulate(store: Any, config: SimConfig, *, truth_path: str | os.PathLike[str] | None = None,
             progress: Progress | None = None, threaded: bool = True) -> GroundTruth:
    """Generate ``config``'s world into a FlowStore (or a store path); returns the ground truth.

    With ``threaded`` the store writes chunk k (Parquet encoding releases the GIL) while chunk
    k+1 is generated; memory holds at most two chunks.
    """
    from flowatlas.store import FlowStore

    target = store if isinstance(store, FlowStore) else FlowStore(store)
    sim = Simulation(config)
    written = 0
    if threaded:
        written = write_pipelined(target, sim.batches(progress))
    else:
        for batch in sim.batches(progress):
            written += target.append(batch)
    sim.truth.flows["written"] = written
    if truth_path is not None:
        sim.truth.write(truth_path)
    return sim.truth


def write_pipelined(store: Any, batches: Iterator[pa.RecordBatch]) -> int:
    pending: queue.Queue[pa.RecordBatch | None] = queue.Queue(maxsize=1)
    result: dict[str, Any] = {"rows": 0}

    def writer() -> None:
        try:
            while (batch := pending.get()) is not None:
                result["rows"] += store.append(batch)
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc
            while pending.get() is not None:
                pass

    thread = threading.Thread(target=writer, name="simulate-writer", daemon=True)
    thread.start()
    try:
        for batch in batches:
            if "error" in result:
                break
            pending.put(batch)
    finally:
        pending.put(None)
        thread.join()
    if "error" in result:
        raise result["error"]
    return int(result["rows"])
