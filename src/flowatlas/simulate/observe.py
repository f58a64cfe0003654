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
    out["in_if"] = interface(out["src_as"])
    out["out_if"] = interface(out["dst_as"])
    thinned = thin(out["packets"], rate, rng)
    if thinned is not None:
        packets = out["packets"]
        keep = thinned > 0
        ratio = thinned[keep].astype(np.float64) / np.maximum(packets[keep], 1)
        out = take(out, np.flatnonzero(keep))
        index = index[keep]
        out["bytes"] = np.maximum(np.rint(out["bytes"] * ratio), 1).astype(np.uint64)
        out["packets"] = thinned[keep]
    return out, index


def interface(asn: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """The exporter interface a neighbouring AS's traffic uses."""
    return (asn % _INTERFACES + 1).astype(np.uint32)


def thin(packets: npt.NDArray[np.uint64], rate: npt.NDArray[np.uint32],
         rng: np.random.Generator) -> npt.NDArray[np.uint64] | None:
    """Sampled packet counts, Binomial(packets, 1/rate); None when nothing is sampled."""
    sampled = rate > 1
    if not sampled.any():
        return None
    thinned = packets.copy()
    thinned[sampled] = rng.binomial(packets[sampled].astype(np.int64),
                                    1.0 / rate[sampled]).astype(np.uint64)
    return thinned


def path_codes(world: World, asns: npt.NDArray[np.uint32]) -> npt.NDArray[np.int16]:
    """(k, k) table over the given ASes: the exporter that sees each pair, or -1.

    The same answers as ``World.paths``, precomputed so the background looks up a pair instead of
    hashing every flow.
    """
    k = len(asns)
    seen, exporter = world.paths(np.repeat(asns, k), np.tile(asns, k))
    codes: npt.NDArray[np.int16] = np.where(seen, exporter, -1).astype(np.int16)
    return codes.reshape(k, k)
