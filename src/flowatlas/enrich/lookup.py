"""Who addresses belong to: AS number, AS name and country for arrays of addresses.

An :class:`Enricher` stacks datasets (a store's loaded MMDBs over the default dataset); for each
field the first layer that knows an address answers. Lookups are vectorised: the distinct
addresses of a column are found once (``np.unique``), each layer is one ``searchsorted`` over
them, and the answers are spread back, so there is no Python call per row.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from flowatlas.enrich.dataset import Dataset, DatasetError, DatasetInfo, default_dir
from flowatlas.enrich.table import is_v4_rows, u32
from flowatlas.ranges import Addrs, Column, addr_keys

STORE_DIR = "enrichment"
"""Datasets a user loaded into a store live in ``<store>/enrichment/<name>/``."""

IDENTITY_SCHEMA = pa.schema([
    pa.field("asn", pa.uint32()),
    pa.field("as_name", pa.string()),
    pa.field("country", pa.string()),
])


@dataclass
class Identity:
    """The identity of n addresses: AS number (0 unknown), AS name and country (None unknown)."""

    asn: npt.NDArray[np.uint32]
    as_name: pa.Array
    country: pa.Array

    def table(self, prefix: str = "") -> pa.Table:
        """As columns ``{prefix}asn``, ``{prefix}as_name``, ``{prefix}country``."""
        asn = pa.array(self.asn, pa.uint32(), mask=self.asn == 0)
        return pa.Table.from_arrays([asn, self.as_name, self.country],
                                    names=[f"{prefix}{n}" for n in IDENTITY_SCHEMA.names])


class Enricher:
    """Layers of datasets, first answer wins per field; ``sources`` says which answered."""

    def __init__(self, datasets: list[Dataset]) -> None:
        self.datasets = datasets

    @property
    def sources(self) -> list[DatasetInfo]:
        return [d.info for d in self.datasets]

    def describe(self) -> dict[str, Any]:
        """``{source, version, date}`` of the data behind the answers (the API's ``enrichment``
        field; with several datasets, the first is named and all are listed)."""
        if not self.datasets:
            return {"source": None, "version": None, "date": None, "datasets": []}
        first = self.datasets[0].info
        return {"source": first.source, "version": first.version, "date": first.date,
                "datasets": [{"source": d.info.source, "version": d.info.version,
                              "date": d.info.date} for d in self.datasets]}

    def field(self) -> dict[str, Any]:
        """``{source, version, date}``: the ``enrichment`` field of JSON answers (CLI and API)."""
        described = self.describe()
        return {k: described[k] for k in ("source", "version", "date")}

    def footer(self) -> str:
        """One line for the end of CLI answers."""
        if not self.datasets:
            return "enrichment: no dataset installed (run scripts/env.sh)"
        return "enrichment: " + "; ".join(f"{d.info.source} {d.info.date}" for d in self.datasets)

    def keys(self, keys: Addrs) -> Identity:
        """The identity of each ``V16`` key."""
        n = len(keys)
        asn = np.zeros(n, dtype=np.uint32)
        names: pa.Array = pa.nulls(n, pa.string())
        countries: pa.Array = pa.nulls(n, pa.string())
        if not n or not self.datasets:
            return Identity(asn, names, countries)
        m = np.ascontiguousarray(keys).view(np.uint8).reshape(-1, 16)
        v4 = is_v4_rows(m)
        parts: list[tuple[npt.NDArray[np.intp], Identity]] = []
        # IPv4 distinct values as integers (a fast sort), the rest as 16-byte keys.
        for rows, values, by_v4 in ((np.flatnonzero(v4), u32(m[v4]), True),
                                    (np.flatnonzero(~v4), keys[~v4], False)):
            if not len(rows):
                continue
            uniq, inverse = np.unique(values, return_inverse=True)
            ident = self._distinct(uniq, by_v4)
            take = pa.array(inverse.ravel().astype(np.int64))
            parts.append((rows, Identity(ident.asn[inverse.ravel()], ident.as_name.take(take),
                                         ident.country.take(take))))
        if len(parts) == 1 and len(parts[0][0]) == n:
            return parts[0][1]
        order = np.concatenate([rows for rows, _ in parts])
        back = pa.array(np.argsort(order, kind="stable"))
        for rows, ident in parts:
            asn[rows] = ident.asn
        return Identity(asn, pa.concat_arrays([i.as_name for _, i in parts]).take(back),
                        pa.concat_arrays([i.country for _, i in parts]).take(back))

    def _distinct(self, uniq: npt.NDArray[Any], by_v4: bool) -> Identity:
        u = len(uniq)
        u_asn = np.zeros(u, dtype=np.uint32)
        name_src = np.full(u, -1, dtype=np.int64)   # layer index per field, -1 none yet
        name_code = np.full(u, -1, dtype=np.int64)
        cc_src = np.full(u, -1, dtype=np.int64)
        cc_code = np.full(u, -1, dtype=np.int64)
        layers = [layer for d in self.datasets for layer in d.layers]
        for li, layer in enumerate(layers):
            need = np.zeros(u, dtype=bool)
            if "asn" in layer.provides or "as_name" in layer.provides:
                need |= (u_asn == 0) | (name_src < 0)
            if "country" in layer.provides:
                need |= cc_src < 0
            todo = np.flatnonzero(need)
            if not len(todo):
                continue
            row = layer.index_v4(uniq[todo]) if by_v4 else layer.index_v16(uniq[todo])
            hit = row >= 0
            todo, row = todo[hit], row[hit]
            if "asn" in layer.provides:
                fill = (u_asn[todo] == 0) & (layer.asn[row] != 0)
                u_asn[todo[fill]] = layer.asn[row[fill]]
            if "as_name" in layer.provides:
                code = layer.name_codes[row]
                fill = (name_src[todo] < 0) & (code >= 0)
                name_src[todo[fill]] = li
                name_code[todo[fill]] = code[fill]
            if "country" in layer.provides:
                code = layer.country_codes[row]
                fill = (cc_src[todo] < 0) & (code >= 0)
                cc_src[todo[fill]] = li
                cc_code[todo[fill]] = code[fill]
        return Identity(u_asn, _gather([layer.names for layer in layers], name_src, name_code),
                        _gather([layer.countries for layer in layers], cc_src, cc_code))

    def column(self, column: Column) -> Identity:
        """The identity of each address of an Arrow address column (nulls are unknown)."""
        return self.keys(addr_keys(column))


def _gather(values: list[pa.Array], src: npt.NDArray[np.int64],
            code: npt.NDArray[np.int64]) -> pa.Array:
    """Per distinct address, the string ``values[src][code]`` (null where src < 0)."""
    out = pa.nulls(len(src), pa.string())
    if not values:
        return out
    # One concatenated dictionary: offsets turn (layer, code) into one index, then one take.
    offsets = np.cumsum([0] + [len(v) for v in values])
    flat = pa.concat_arrays([v.cast(pa.string()) for v in values])
    idx = np.where(src >= 0, offsets[np.maximum(src, 0)] + code, -1)
    return flat.take(pa.array(idx, pa.int64(), mask=idx < 0))


_cache: dict[tuple[str, ...], tuple[tuple[float, ...], Enricher]] = {}
_lock = threading.Lock()


def _stamp(path: Path) -> float:
    try:
        return (path / "dataset.json").stat().st_mtime
    except OSError:
        return -1.0


def store_datasets(store_root: str | os.PathLike[str]) -> list[Path]:
    """The datasets loaded into a store, newest first."""
    base = Path(store_root) / STORE_DIR
    if not base.is_dir():
        return []
    found = [p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")
             and (p / "dataset.json").exists()]
    return sorted(found, key=lambda p: (_stamp(p), p.name), reverse=True)


def enricher(store_root: str | os.PathLike[str] | None = None) -> Enricher:
    """The enricher for a store: its loaded datasets over the default one (cached; a dataset
    rebuilt or loaded since is picked up by its description's mtime)."""
    dirs = [*(store_datasets(store_root) if store_root is not None else []), default_dir()]
    key = tuple(str(d) for d in dirs)
    stamps = tuple(_stamp(d) for d in dirs)
    with _lock:
        cached = _cache.get(key)
        if cached and cached[0] == stamps:
            return cached[1]
    datasets = []
    for d in dirs:
        if stamps[dirs.index(d)] < 0:
            continue  # no dataset there (the default one before set-up ran)
        try:
            datasets.append(Dataset.load(d))
        except DatasetError:
            if d != dirs[-1]:
                raise
    result = Enricher(datasets)
    with _lock:
        _cache[key] = (stamps, result)
    return result
