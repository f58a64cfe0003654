"""Collecting planted flows with the truth record each row counts toward.

Every planted row carries a tag, the index of a truth dict; after observation and sampling the
generator writes into each dict how many of its rows were actually recorded
(``observed_records``), so scorers know what was findable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from flowatlas.addresses import unpack
from flowatlas.simulate.config import MS
from flowatlas.simulate.flows import Columns, concat, empty

Truth = dict[str, Any]


@dataclass
class Planted:
    parts: list[Columns] = field(default_factory=list)
    tags: list[npt.NDArray[np.int32]] = field(default_factory=list)
    counters: list[Truth] = field(default_factory=list)
    _tags: dict[int, int] = field(default_factory=dict)
    """Tag of each counter by identity: two truth dicts may compare equal (two relays' cover
    traffic, say) and are still two records (an equality test lost one: issue 18.7)."""

    def add(self, cols: Columns, counter: Truth) -> None:
        """Rows whose recorded count lands in ``counter['observed_records']``."""
        counter.setdefault("records", 0)
        counter["records"] += len(cols["time_start"])
        counter["observed_records"] = 0
        tag = self._tags.get(id(counter))
        if tag is None:  # ids stay unique: self.counters keeps every counter alive
            tag = self._tags[id(counter)] = len(self.counters)
            self.counters.append(counter)
        self.parts.append(cols)
        self.tags.append(np.full(len(cols["time_start"]), tag, dtype=np.int32))

    def columns(self) -> tuple[Columns, npt.NDArray[np.int32]]:
        if not self.parts:
            return empty(), np.zeros(0, dtype=np.int32)
        return concat(self.parts), np.concatenate(self.tags)

    def count(self, kept_tags: npt.NDArray[np.int32]) -> None:
        counts = np.bincount(kept_tags, minlength=len(self.counters))
        for counter, n in zip(self.counters, counts, strict=True):
            counter["observed_records"] = int(n)


def records(start: npt.NDArray[np.int64], end: npt.NDArray[np.int64], src: np.void,
            src_as: int, dst: np.void, dst_as: int, src_port: Any, dst_port: Any,
            protocol: int, packets: Any, nbytes: Any, flags: int) -> Columns:
    """One-way records between two fixed hosts (scalars broadcast over the rows)."""
    n = len(start)
    cols = empty(n)
    cols["time_start"] = (np.asarray(start, dtype=np.int64) // MS) * MS
    cols["time_end"] = np.maximum((np.asarray(end, dtype=np.int64) // MS) * MS,
                                  cols["time_start"])
    cols["src_addr"][:] = src
    cols["dst_addr"][:] = dst
    cols["src_as"][:] = src_as
    cols["dst_as"][:] = dst_as
    cols["src_port"][:] = src_port
    cols["dst_port"][:] = dst_port
    cols["protocol"][:] = protocol
    cols["packets"][:] = np.maximum(np.asarray(packets), 1)
    cols["bytes"][:] = np.maximum(np.asarray(nbytes), 1)
    cols["tcp_flags"][:] = flags if protocol == 6 else 0
    return cols


def text(addr: np.void) -> str:
    return unpack(bytes(addr.tobytes()))


def iso(t_us: int) -> str:
    return datetime.fromtimestamp(t_us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def path_info(world: Any, src_as: int, dst_as: int) -> Truth:
    """Whether partners see this AS pair, through which exporter, at which sampling rate."""
    seen, exporter = world.paths(np.array([src_as], np.uint32), np.array([dst_as], np.uint32))
    e = int(exporter[0])
    return {
        "path_observed": bool(seen[0]),
        "exporter": text(world.exporter_addr[e]),
        "sampling_rate": int(world.exporter_rate[e]),
    }
