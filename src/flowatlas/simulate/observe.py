"""What the partner networks see: path observation, exporter assignment, 1:N packet sampling.

A flow is recorded only if the path between its two ASes crosses a partner exporter
(``World.paths``). Each exporter samples packets 1:N: a flow's true packet count is thinned with
Binomial(packets, 1/N), flows left with no sampled packet vanish, bytes shrink in proportion, and
the record carries ``sampling_rate = N`` (counters stay raw, as real sampled NetFlow reports them).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from flowatlas.simulate.flows import Columns, take
from flowatlas.simulate.world import World

_INTERFACES = 48


def observe(world: World, cols: Columns,
            rng: np.random.Generator) -> tuple[Columns, npt.NDArray[np.intp]]:
    """The recorded subset of ``cols`` and, for each kept row, its index in ``cols``."""
    seen, exporter = world.paths(cols["src_as"], cols["dst_as"])
    index = np.flatnonzero(seen)
    out = take(cols, index)
    exporter = exporter[index]
    rate = world.exporter_rate[exporter]
    out["exporter"] = world.exporter_addr[exporter]
    out["source_id"] = exporter.astype(np.uint32)
    out["sampling_rate"] = rate
    # Interfaces follow the neighbouring AS, so one peer always enters on the same port.
    out["in_if"] = (out["src_as"] % _INTERFACES + 1).astype(np.uint32)
    out["out_if"] = (out["dst_as"] % _INTERFACES + 1).astype(np.uint32)
    sampled = rate > 1
    if sampled.any():
        packets = out["packets"]
        thinned = packets.copy()
        thinned[sampled] = rng.binomial(packets[sampled].astype(np.int64),
                                        1.0 / rate[sampled]).astype(np.uint64)
        keep = thinned > 0
        ratio = thinned[keep].astype(np.float64) / np.maximum(packets[keep], 1)
        out = take(out, np.flatnonzero(keep))
        index = index[keep]
        out["bytes"] = np.maximum(np.rint(out["bytes"] * ratio), 1).astype(np.uint64)
        out["packets"] = thinned[keep]
    return out, index
