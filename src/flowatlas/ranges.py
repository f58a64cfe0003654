"""Address ranges over the canonical 16-byte addresses: keys, prefix sets and class tables.

An address column becomes ``V16`` keys (the 16 bytes as one numpy scalar, which sorts and
compares bytewise), and membership in prefixes is a ``np.searchsorted`` over sorted,
non-overlapping byte ranges: :class:`RangeSet` for a plain set of prefixes, :class:`NetClassTable`
for the operator's ``prefix,class`` table (most specific prefix wins). The analytics, the
pseudonymiser, opt-outs and scope checks all use these; none of them depends on another for it.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from flowatlas.addresses import Prefix, from_matrix, parse_prefix, to_matrix, unpack_many

ADDR = np.dtype("V16")
Addrs: TypeAlias = npt.NDArray[np.void]
Column: TypeAlias = pa.Array | pa.ChunkedArray | npt.NDArray[np.uint8]
UNKNOWN = "unknown"
"""The class of an address outside every prefix of a :class:`NetClassTable`."""


class NetClassError(ValueError):
    """A network class table that cannot be read (names the file or row)."""


def addr_keys(column: Column) -> Addrs:
    """An Arrow address column or an (n, 16) byte matrix as ``V16`` keys (one copy at most)."""
    matrix = column if isinstance(column, np.ndarray) else to_matrix(column)
    keys: Addrs = np.ascontiguousarray(matrix, dtype=np.uint8).view(ADDR).ravel()
    return keys


def addr_text(keys: Addrs) -> list[str]:
    if len(keys) == 0:
        return []
    return unpack_many(from_matrix(np.ascontiguousarray(keys).view(np.uint8).reshape(-1, 16)))


def key_prefixes(keys: Addrs) -> list[Prefix]:
    """Single-address prefixes for many keys (one text conversion for all of them)."""
    texts = addr_text(np.asarray(keys, dtype=ADDR))
    return [Prefix(k.tobytes(), k.tobytes(), t) for k, t in zip(keys, texts, strict=True)]


def key_prefix(key: np.void) -> Prefix:
    raw = key.tobytes()
    text = addr_text(np.array([key], dtype=ADDR))[0]
    return Prefix(raw, raw, text)


class RangeSet:
    """Membership of addresses in a set of prefixes, vectorised (overlaps merged)."""

    def __init__(self, prefixes: list[Prefix]) -> None:
        pairs = sorted((p.low, p.high) for p in prefixes)
        lows: list[bytes] = []
        highs: list[bytes] = []
        for low, high in pairs:
            if highs and low <= highs[-1]:
                highs[-1] = max(highs[-1], high)
            else:
                lows.append(low)
                highs.append(high)
        self.lows = np.array(lows, dtype=ADDR)
        self.highs = np.array(highs, dtype=ADDR)

    def index(self, keys: Addrs) -> npt.NDArray[np.intp]:
        """Index of the merged range holding each key, or -1."""
        if len(self.lows) == 0:
            return np.full(len(keys), -1, dtype=np.intp)
        idx = np.searchsorted(self.lows, keys, side="right") - 1
        # Void scalars have no <=; the count of range ends below a key says the same.
        below = np.searchsorted(self.highs, keys, side="left")
        return np.where((idx >= 0) & (below == idx), idx, -1)

    def contains(self, keys: Addrs) -> npt.NDArray[np.bool_]:
        return self.index(keys) >= 0


@dataclass
class NetClassTable:
    lows: Addrs
    highs: Addrs
    classes: npt.NDArray[np.int16]
    names: list[str]

    @classmethod
    def empty(cls) -> NetClassTable:
        return cls(np.zeros(0, ADDR), np.zeros(0, ADDR), np.zeros(0, np.int16), [])

    @classmethod
    def from_rows(cls, rows: list[tuple[str, str]]) -> NetClassTable:
        names: list[str] = []
        spans = []
        for i, (text, name) in enumerate(rows):
            try:
                p = parse_prefix(text)
            except ValueError:
                raise NetClassError(f"network class table row {i + 1}: {text!r} is not a prefix") \
                    from None
            label = name.strip().lower() or UNKNOWN
            if label not in names:
                names.append(label)
            spans.append((p.low, p.high, names.index(label)))
        return cls._flatten(spans, names)

    @classmethod
    def load(cls, path: str | Path) -> NetClassTable:
        return cls.from_rows(read_rows(path))

    @classmethod
    def _flatten(cls, spans: list[tuple[bytes, bytes, int]], names: list[str]) -> NetClassTable:
        spans.sort()
        if all(spans[i][0] > spans[i - 1][1] for i in range(1, len(spans))):
            return cls(np.array([s[0] for s in spans], dtype=ADDR),
                       np.array([s[1] for s in spans], dtype=ADDR),
                       np.array([s[2] for s in spans], dtype=np.int16), names)
        # Most specific wins: paint wide prefixes first, then cut narrower ones into them.
        spans.sort(key=lambda s: (int.from_bytes(s[1], "big") - int.from_bytes(s[0], "big")),
                   reverse=True)
        flat: list[tuple[int, int, int]] = []
        for low_b, high_b, c in spans:
            low, high = int.from_bytes(low_b, "big"), int.from_bytes(high_b, "big")
            kept = []
            for a, b, k in flat:
                if b < low or a > high:
                    kept.append((a, b, k))
                    continue
                if a < low:
                    kept.append((a, low - 1, k))
                if b > high:
                    kept.append((high + 1, b, k))
            kept.append((low, high, c))
            flat = kept
        flat.sort()
        return cls(np.array([a.to_bytes(16, "big") for a, _, _ in flat], dtype=ADDR),
                   np.array([b.to_bytes(16, "big") for _, b, _ in flat], dtype=ADDR),
                   np.array([k for _, _, k in flat], dtype=np.int16), names)

    def codes(self, keys: Addrs) -> npt.NDArray[np.intp]:
        """Index into ``names`` of each address's class (``len(names)`` outside every prefix)."""
        if len(self.lows) == 0:
            return np.full(len(keys), len(self.names), dtype=np.intp)
        idx = np.searchsorted(self.lows, keys, side="right") - 1
        below = np.searchsorted(self.highs, keys, side="left")
        hit = (idx >= 0) & (below == idx)
        return np.where(hit, self.classes[np.maximum(idx, 0)], len(self.names)).astype(np.intp)

    def member(self, keys: Addrs, classes: Collection[str]) -> npt.NDArray[np.bool_]:
        """True where an address's (most specific) class is one of ``classes``."""
        wanted = [i for i, name in enumerate(self.names) if name in classes]
        return np.isin(self.codes(keys), wanted)

    def lookup(self, keys: Addrs) -> list[str]:
        """The class name of each address (``unknown`` outside every prefix)."""
        names = np.array([*self.names, UNKNOWN], dtype=object)
        return [str(x) for x in names[self.codes(keys)]]

    def __len__(self) -> int:
        return len(self.lows)


def read_rows(path: str | Path) -> list[tuple[str, str]]:
    """``prefix,class[,asn]`` rows of a CSV file (a header row and # comments are skipped)."""
    try:
        with open(path, newline="") as fh:
            raw = [r for r in csv.reader(fh) if r and not r[0].startswith("#")]
    except OSError as exc:
        raise NetClassError(f"cannot read network class table {str(path)!r}: {exc}") from None
    if raw and raw[0][0].strip().lower() == "prefix":
        raw = raw[1:]
    bad = next((i for i, r in enumerate(raw) if len(r) < 2), None)
    if bad is not None:
        raise NetClassError(f"{path}: row {bad + 1} needs prefix,class")
    return [(r[0].strip(), r[1].strip()) for r in raw]


def _valid(column: Column, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    if not isinstance(column, np.ndarray) and column.null_count:
        valid = column.is_valid()
        mask &= np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool)
    return mask


def in_prefixes(column: Column, prefixes: Sequence[Prefix]) -> npt.NDArray[np.bool_]:
    """True where the address lies inside any of ``prefixes`` (nulls are outside)."""
    return _valid(column, RangeSet(list(prefixes)).contains(addr_keys(column)))


def in_classes(
    column: Column, table: NetClassTable, classes: Collection[str]
) -> npt.NDArray[np.bool_]:
    """True where the address's most specific class in ``table`` is one of ``classes``."""
    return _valid(column, table.member(addr_keys(column), classes))
