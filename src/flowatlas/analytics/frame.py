"""Flows as plain numpy columns: what every analytic computes on.

Addresses become ``V16`` scalars (the 16 canonical bytes, see :mod:`flowatlas.ranges`), which
numpy sorts and compares bytewise, so grouping and joining by address needs no per-row Python.
Times are int64 µs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from flowatlas.addresses import Prefix, from_matrix, pack, parse_prefix
from flowatlas.atlas import Atlas
from flowatlas.query.expr import AddrMatch, Direction, Expr, conjoin
from flowatlas.query.model import MAX_LIMIT, Selection
from flowatlas.query.plan import MAX_HINT_PREFIXES

# The 16-byte keys and range sets live in flowatlas.ranges (governance uses them too); the
# analytics import them from here as before.
from flowatlas.ranges import ADDR as ADDR
from flowatlas.ranges import Addrs as Addrs
from flowatlas.ranges import RangeSet as RangeSet
from flowatlas.ranges import addr_keys as addr_keys
from flowatlas.ranges import addr_text as addr_text
from flowatlas.ranges import key_prefix as key_prefix
from flowatlas.ranges import key_prefixes as key_prefixes


class AnalyticsError(ValueError):
    """Input an investigation cannot work with (bad address, empty window, ...)."""


def addr_column(keys: Addrs) -> pa.FixedSizeBinaryArray:
    """``V16`` keys as a 16-byte Arrow address column: the form results carry (rendered to
    text once, by flowatlas.formats)."""
    return from_matrix(np.ascontiguousarray(keys, dtype=ADDR).view(np.uint8).reshape(-1, 16))


def addr_key(text: str) -> np.void:
    try:
        key: np.void = np.frombuffer(pack(text), dtype=ADDR)[0]
        return key
    except ValueError as exc:
        raise AnalyticsError(str(exc)) from None


def parse_addresses(texts: list[str] | tuple[str, ...], what: str = "address") -> list[Prefix]:
    """Single addresses (or prefixes) from user text, each error naming the bad value."""
    out = []
    for t in texts:
        try:
            out.append(parse_prefix(t))
        except ValueError:
            raise AnalyticsError(f"{what} {t!r} is not an IP address or prefix") from None
    if not out:
        raise AnalyticsError(f"give at least one {what}")
    return out


@dataclass
class FlowFrame:
    """The columns analytics use, one row per flow record."""

    start: npt.NDArray[np.int64]
    end: npt.NDArray[np.int64]
    src: Addrs
    dst: Addrs
    sport: npt.NDArray[np.int32]
    dport: npt.NDArray[np.int32]
    proto: npt.NDArray[np.uint8]
    flags: npt.NDArray[np.uint8]
    packets: npt.NDArray[np.float64]
    bytes: npt.NDArray[np.float64]
    rate: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.start.shape[0])

    @property
    def est_bytes(self) -> npt.NDArray[np.float64]:
        """Bytes scaled by the sampling rate (an unbiased estimate of the true volume)."""
        return self.bytes * self.rate

    def take(self, index: npt.NDArray[Any]) -> FlowFrame:
        return FlowFrame(**{k: v[index] for k, v in self.__dict__.items()})

    @classmethod
    def from_table(cls, table: pa.Table | pa.RecordBatch) -> FlowFrame:
        def num(name: str, dtype: Any) -> npt.NDArray[Any]:
            col = table.column(name)
            if isinstance(col, pa.ChunkedArray):
                col = col.combine_chunks()
            return np.asarray(col.to_numpy(zero_copy_only=False)).astype(dtype, copy=False)

        return cls(
            start=num("time_start", "datetime64[us]").astype(np.int64),
            end=num("time_end", "datetime64[us]").astype(np.int64),
            src=addr_keys(table.column("src_addr")),
            dst=addr_keys(table.column("dst_addr")),
            sport=num("src_port", np.int32),
            dport=num("dst_port", np.int32),
            proto=num("protocol", np.uint8),
            flags=num("tcp_flags", np.uint8),
            packets=num("packets", np.float64),
            bytes=num("bytes", np.float64),
            rate=np.maximum(num("sampling_rate", np.float64), 1.0),
        )

    @classmethod
    def concat(cls, frames: list[FlowFrame]) -> FlowFrame:
        if not frames:
            return cls.from_table(_EMPTY)
        return cls(**{k: np.concatenate([getattr(f, k) for f in frames])
                      for k in frames[0].__dict__})


def _empty_table() -> pa.Table:
    from flowatlas.schema import FLOW_SCHEMA

    return FLOW_SCHEMA.empty_table()


_EMPTY = _empty_table()


def fetch(atlas: Atlas, selection: Selection, limit: int = MAX_LIMIT) -> FlowFrame:
    """Every flow of a selection as a frame, streamed so only the needed columns are kept."""
    frames = [FlowFrame.from_table(b) for b in atlas.iter_flows(selection, limit) if b.num_rows]
    return FlowFrame.concat(frames)


def touching(direction: Direction, prefixes: list[Prefix], base: Selection) -> list[Selection]:
    """Selections for flows with an endpoint in ``prefixes``, split so each one stays pruned."""
    out = []
    for i in range(0, len(prefixes), MAX_HINT_PREFIXES):
        match: Expr = AddrMatch(direction, tuple(prefixes[i:i + MAX_HINT_PREFIXES]))
        out.append(Selection(conjoin(match, base.filter), base.window, base.scope))
    return out


def fetch_touching(atlas: Atlas, direction: Direction, prefixes: list[Prefix],
                   base: Selection) -> FlowFrame:
    """Flows with an endpoint in ``prefixes``, each flow once even when split across queries."""
    frames = []
    step = MAX_HINT_PREFIXES
    for i, sel in enumerate(touching(direction, prefixes, base)):
        frame = fetch(atlas, sel)
        if i and direction is Direction.ANY and len(frame):
            # A flow between two chunks' addresses came back with the earlier chunk already.
            earlier = RangeSet(prefixes[: i * step])
            frame = frame.take(~(earlier.contains(frame.src) | earlier.contains(frame.dst)))
        frames.append(frame)
    return FlowFrame.concat(frames)
