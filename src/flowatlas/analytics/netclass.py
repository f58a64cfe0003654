"""Network classes of address space (residential, hosting, cdn, enterprise, ...).

A table of ``prefix,class[,asn]`` rows (CSV, header optional) that the simulator writes and an
operator maintains. Lookups are vectorised: prefixes become non-overlapping byte ranges searched
with ``np.searchsorted``; where prefixes nest, the most specific one wins.
"""

from __future__ import annotations

import csv
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from flowatlas.addresses import parse_prefix
from flowatlas.analytics.frame import ADDR, Addrs, AnalyticsError

UNKNOWN = "unknown"
EYEBALL = frozenset({"residential", "enterprise", "mobile", "education"})
INFRASTRUCTURE = frozenset({"cdn", "infrastructure", "resolver", "cloud-edge"})
SECURITY = frozenset({"security", "research"})


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
                raise AnalyticsError(f"network class table row {i + 1}: {text!r} is not a prefix") \
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
        raise AnalyticsError(f"cannot read network class table {str(path)!r}: {exc}") from None
    if raw and raw[0][0].strip().lower() == "prefix":
        raw = raw[1:]
    bad = next((i for i, r in enumerate(raw) if len(r) < 2), None)
    if bad is not None:
        raise AnalyticsError(f"{path}: row {bad + 1} needs prefix,class")
    return [(r[0].strip(), r[1].strip()) for r in raw]
