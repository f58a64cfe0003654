"""A range table: sorted, non-overlapping 16-byte address ranges and what is known of each.

One table is one *layer* of a dataset: an AS layer (number and name), a country layer, or a
user's MMDB with both. Ranges are inclusive ``[low, high]`` keys in the store's 16-byte space
(IPv4 mapped into ``::ffff:0:0/96``), so a lookup is a ``np.searchsorted`` over ``lows``. The
file form is one uncompressed Arrow IPC file, memory-mapped on load: opening the 500k-range AS
layer costs milliseconds, not a parse.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from flowatlas.addresses import from_matrix, to_matrix
from flowatlas.ranges import ADDR, Addrs
from flowatlas.schema import ADDRESS_TYPE

V4_LOW = np.frombuffer(bytes(10) + b"\xff\xff" + bytes(4), dtype=ADDR)[0]
V4_HIGH = np.frombuffer(bytes(10) + b"\xff\xff" + b"\xff" * 4, dtype=ADDR)[0]

TABLE_SCHEMA = pa.schema([
    pa.field("low", ADDRESS_TYPE, nullable=False),
    pa.field("high", ADDRESS_TYPE, nullable=False),
    pa.field("asn", pa.uint32(), nullable=False),  # 0: not known in this layer
    pa.field("as_name", pa.dictionary(pa.int32(), pa.string())),
    pa.field("country", pa.dictionary(pa.int32(), pa.string())),
])
FIELDS = ("asn", "as_name", "country")


class RangeTableError(ValueError):
    """A range table that cannot be built or read (names the file or row)."""


@dataclass
class RangeTable:
    """Sorted non-overlapping ranges with an AS number, AS name and country code each.

    ``provides`` names the fields this layer knows (an AS layer says nothing of countries, so a
    lower layer's country shows through).
    """

    lows: Addrs
    highs: Addrs
    asn: npt.NDArray[np.uint32]
    name_codes: npt.NDArray[np.int32]  # index into ``names``, -1 unknown
    names: pa.Array
    country_codes: npt.NDArray[np.int32]
    countries: pa.Array
    provides: tuple[str, ...]

    def __post_init__(self) -> None:
        # IPv4 ranges again as 32-bit integers: most flows are IPv4, and searchsorted over
        # uint32 is several times faster than over 16-byte void keys.
        lo = int(np.searchsorted(self.lows, V4_LOW, side="left"))
        hi = int(np.searchsorted(self.lows, V4_HIGH, side="right"))
        self._v4_span = (lo, hi)
        m_low = np.ascontiguousarray(self.lows[lo:hi]).view(np.uint8).reshape(-1, 16)
        m_high = np.ascontiguousarray(self.highs[lo:hi]).view(np.uint8).reshape(-1, 16)
        self._v4_lows = u32(m_low)
        # A range that starts in IPv4 space and runs past it is clipped to its end there.
        in_v4 = (m_high[:, :12] == m_low[:, :12]).all(axis=1)
        self._v4_highs = np.where(in_v4, u32(m_high), np.uint32(0xFFFFFFFF)).astype(np.uint32)

    def __len__(self) -> int:
        return len(self.lows)

    @classmethod
    def from_arrow(cls, table: pa.Table, provides: tuple[str, ...] = FIELDS, *,
                   checked: bool = False) -> RangeTable:
        """Ranges from an Arrow table of ``TABLE_SCHEMA`` columns (any order of rows; where
        ranges overlap, the one starting later wins from its start on). ``checked``: the rows
        are already sorted and disjoint (a table this class wrote), so loading skips the sort."""
        table = table.select(list(TABLE_SCHEMA.names)).cast(TABLE_SCHEMA)
        table = table.combine_chunks()
        lows = np.ascontiguousarray(to_matrix(table.column("low"))).view(ADDR).ravel()
        highs = np.ascontiguousarray(to_matrix(table.column("high"))).view(ADDR).ravel()
        if checked:
            return cls(lows, highs, np.asarray(table.column("asn").to_numpy(), dtype=np.uint32),
                       _codes(_chunk(table, "as_name")), _chunk(table, "as_name").dictionary,
                       _codes(_chunk(table, "country")), _chunk(table, "country").dictionary,
                       provides)
        if bool(np.any(_less(highs, lows))):
            bad = int(np.flatnonzero(_less(highs, lows))[0])
            raise RangeTableError(f"range {bad + 1}: end below start")
        order = np.argsort(lows, kind="stable")
        lows, highs = lows[order], highs[order]
        asn = np.asarray(table.column("asn").to_numpy(), dtype=np.uint32)[order]
        names_col = _chunk(table, "as_name")
        country_col = _chunk(table, "country")
        name_codes = _codes(names_col)[order]
        country_codes = _codes(country_col)[order]
        # Overlaps (a source's bug): clip each range at the start of the next one.
        if len(lows) > 1:
            nxt = _pred(lows[1:])
            over = np.flatnonzero(_less(nxt, highs[:-1]))
            highs = highs.copy()
            highs[over] = nxt[over]
            keep = ~_less(highs, lows)
            if not keep.all():
                lows, highs, asn = lows[keep], highs[keep], asn[keep]
                name_codes, country_codes = name_codes[keep], country_codes[keep]
        return cls(lows, highs, asn, name_codes, names_col.dictionary, country_codes,
                   country_col.dictionary, provides)

    def to_arrow(self) -> pa.Table:
        def dictionary(codes: npt.NDArray[np.int32], values: pa.Array) -> pa.DictionaryArray:
            idx = pa.array(codes, pa.int32(), mask=codes < 0)
            return pa.DictionaryArray.from_arrays(idx, values.cast(pa.string()))

        return pa.Table.from_arrays([
            from_matrix(np.ascontiguousarray(self.lows).view(np.uint8).reshape(-1, 16)),
            from_matrix(np.ascontiguousarray(self.highs).view(np.uint8).reshape(-1, 16)),
            pa.array(self.asn, pa.uint32()),
            dictionary(self.name_codes, self.names),
            dictionary(self.country_codes, self.countries),
        ], schema=TABLE_SCHEMA)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically (a temporary name, then a rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        meta = {b"provides": ",".join(self.provides).encode()}
        table = self.to_arrow().replace_schema_metadata(meta)
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RangeTable:
        try:
            with pa.memory_map(str(path), "r") as source:
                table = pa.ipc.open_file(source).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            raise RangeTableError(f"cannot read range table {str(path)!r}: {exc}") from None
        meta = table.schema.metadata or {}
        provides = tuple(x for x in meta.get(b"provides", b"").decode().split(",") if x)
        return cls.from_arrow(table, provides or FIELDS, checked=True)

    def index(self, keys: Addrs) -> npt.NDArray[np.intp]:
        """The row of the range holding each key, or -1 (keys need not be sorted)."""
        out = np.full(len(keys), -1, dtype=np.intp)
        if not len(self.lows) or not len(keys):
            return out
        m = np.ascontiguousarray(keys).view(np.uint8).reshape(-1, 16)
        is_v4 = is_v4_rows(m)
        v4 = np.flatnonzero(is_v4)
        if len(v4):
            out[v4] = self.index_v4(u32(m[v4]))
        rest = np.flatnonzero(~is_v4)
        if len(rest):
            out[rest] = self.index_v16(keys[rest])
        return out

    def index_v4(self, values: npt.NDArray[np.uint32]) -> npt.NDArray[np.intp]:
        """:meth:`index` for IPv4 addresses given as host-order integers."""
        out = np.full(len(values), -1, dtype=np.intp)
        if len(self._v4_lows):
            i = np.searchsorted(self._v4_lows, values, side="right") - 1
            ok = (i >= 0) & (values <= self._v4_highs[np.maximum(i, 0)])
            out = np.where(ok, i + self._v4_span[0], -1)
        # A range from below IPv4 space reaching into it (none in real data) is found here.
        lo = self._v4_span[0]
        if lo and not _less(self.highs[lo - 1 : lo], V4_LOW[None])[0]:
            miss = np.flatnonzero(out < 0)
            if len(miss):
                m = np.zeros((len(miss), 16), dtype=np.uint8)
                m[:, 10:12] = 0xFF
                m[:, 12:] = np.asarray(values[miss], dtype=">u4").view(np.uint8).reshape(-1, 4)
                out[miss] = self.index_v16(m.view(ADDR).ravel())
        return out

    def index_v16(self, keys: Addrs) -> npt.NDArray[np.intp]:
        """:meth:`index` by 16-byte keys alone."""
        if not len(self.lows):
            return np.full(len(keys), -1, dtype=np.intp)
        i = np.searchsorted(self.lows, keys, side="right") - 1
        below = np.searchsorted(self.highs, keys, side="left")
        return np.where((i >= 0) & (below == i), i, -1)


def is_v4_rows(m: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Rows of an (n, 16) address matrix that are IPv4-mapped."""
    result: npt.NDArray[np.bool_] = (m[:, :10] == 0).all(axis=1) & (m[:, 10] == 0xFF) \
        & (m[:, 11] == 0xFF)
    return result


def u32(m: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    if not len(m):
        return np.zeros(0, dtype=np.uint32)
    return np.ascontiguousarray(m[:, 12:]).view(">u4").ravel().astype(np.uint32)


def _less(a: Addrs, b: Addrs) -> npt.NDArray[np.bool_]:
    """Element-wise ``a < b`` for V16 keys (void scalars have no ordering operators)."""
    ma = np.ascontiguousarray(a).view(np.uint8).reshape(-1, 16)
    mb = np.ascontiguousarray(b).view(np.uint8).reshape(-1, 16)
    diff = ma != mb
    first = np.argmax(diff, axis=1)
    rows = np.arange(len(ma))
    less: npt.NDArray[np.bool_] = diff.any(axis=1) & (ma[rows, first] < mb[rows, first])
    return less


def _pred(keys: Addrs) -> Addrs:
    """Each key minus one (the all-zero key stays zero)."""
    m = np.ascontiguousarray(keys).view(np.uint8).reshape(-1, 16).copy()
    as_int = m.astype(np.int16)
    borrow = np.ones(len(m), dtype=bool)
    for col in range(15, -1, -1):  # 16 columns, vectorised over rows
        v = as_int[:, col] - borrow
        borrow = v < 0
        as_int[:, col] = np.where(borrow, 255, v)
    zero = (m == 0).all(axis=1)
    out = as_int.astype(np.uint8)
    out[zero] = 0
    result: Addrs = out.view(ADDR).ravel()
    return result


def _chunk(table: pa.Table, name: str) -> pa.DictionaryArray:
    column = table.column(name)
    if column.num_chunks == 1:
        chunk: pa.DictionaryArray = column.chunk(0)
        return chunk
    combined: pa.DictionaryArray = pa.array([], TABLE_SCHEMA.field(name).type) \
        if column.num_chunks == 0 else column.unify_dictionaries().combine_chunks()
    return combined


def _codes(column: pa.Array) -> npt.NDArray[np.int32]:
    if not isinstance(column, pa.DictionaryArray):
        column = pc.dictionary_encode(column)
    idx = column.indices.cast(pa.int32()).fill_null(-1)
    return np.asarray(idx.to_numpy(zero_copy_only=False), dtype=np.int32)
