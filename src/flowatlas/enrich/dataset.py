"""Enrichment datasets on disk: where they live, what they are, and building one.

A dataset is a directory holding ``dataset.json`` (source, version, date, licence, layers) and
one range table per layer (``table.py``). The default dataset is built at set-up
(``scripts/env.sh`` runs ``flowatlas enrich build``) from the ip-location-db npm packages that
``datasets/package-lock.json`` pins, into ``<prefix>/share/flowatlas/enrichment`` of the
environment (or ``$FLOWATLAS_ENRICHMENT_DIR``); nothing is downloaded at run time. A user's
MMDB loaded into a store becomes another dataset under ``<store>/enrichment/`` (``mmdb.py``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from flowatlas.addresses import from_ipv4, from_matrix
from flowatlas.enrich.table import RangeTable, RangeTableError

INFO_FILE = "dataset.json"
ENV_DIR = "FLOWATLAS_ENRICHMENT_DIR"
IP_LOCATION_DB = "ip-location-db"
IP_LOCATION_DB_ATTRIBUTION = (
    "AS data: RouteViews (routeviews.org), NRO (nro.net) and DB-IP (db-ip.com), CC BY 4.0; "
    "countries: ip-location-db asn-country, CC0 1.0")


class DatasetError(ValueError):
    """A dataset that cannot be built or read (names the directory or file)."""


@dataclass(frozen=True)
class DatasetInfo:
    source: str
    version: str
    date: str
    licence: str = ""
    attribution: str = ""
    layers: tuple[str, ...] = ()
    ranges: dict[str, int] = field(default_factory=dict)
    built_from: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "version": self.version, "date": self.date,
                "licence": self.licence, "attribution": self.attribution,
                "layers": list(self.layers), "ranges": dict(self.ranges),
                "built_from": self.built_from}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DatasetInfo:
        return cls(str(raw["source"]), str(raw["version"]), str(raw["date"]),
                   str(raw.get("licence", "")), str(raw.get("attribution", "")),
                   tuple(str(x) for x in raw.get("layers", ())),
                   {str(k): int(v) for k, v in dict(raw.get("ranges", {})).items()},
                   str(raw.get("built_from", "")))


@dataclass
class Dataset:
    root: Path
    info: DatasetInfo
    layers: list[RangeTable]

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> Dataset:
        root = Path(root)
        info = read_info(root)
        try:
            layers = [RangeTable.load(root / name) for name in info.layers]
        except RangeTableError as exc:
            raise DatasetError(f"enrichment dataset {str(root)!r}: {exc}") from None
        return cls(root, info, layers)


def default_dir() -> Path:
    """Where set-up puts the default dataset (``$FLOWATLAS_ENRICHMENT_DIR`` overrides)."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env)
    return Path(sys.prefix) / "share" / "flowatlas" / "enrichment"


def read_info(root: Path) -> DatasetInfo:
    path = root / INFO_FILE
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        return DatasetInfo.from_dict(raw)
    except FileNotFoundError:
        raise DatasetError(f"no enrichment dataset at {str(root)!r} (missing {INFO_FILE})") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{str(path)!r}: not a dataset description ({exc})") from None


def write_dataset(root: Path, info: DatasetInfo, layers: dict[str, RangeTable]) -> DatasetInfo:
    """Write the layers and the description into ``root`` (replacing what was there; the
    description goes last, so a half-written directory is never taken for a dataset)."""
    tmp = root.with_name(f".{root.name}.building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, layer in layers.items():
        layer.save(tmp / name)
    info = DatasetInfo(info.source, info.version, info.date, info.licence, info.attribution,
                       tuple(layers), {name: len(layer) for name, layer in layers.items()},
                       info.built_from)
    (tmp / INFO_FILE).write_text(json.dumps(info.as_dict(), indent=2) + "\n")
    old = root.with_name(f".{root.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if root.exists():
        os.replace(root, old)
    os.replace(tmp, root)
    shutil.rmtree(old, ignore_errors=True)
    return info


# --- the ip-location-db npm packages (CSV ranges) ---------------------------------------------

def _package_version(package: Path) -> str:
    try:
        return str(json.loads((package / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f"{str(package)!r}: not an npm package ({exc})") from None


def version_date(version: str) -> str:
    """ip-location-db versions end in the build's ``YYYYMMDDHH``: 2.3.2026061719 -> 2026-06-17."""
    m = re.search(r"(\d{4})(\d{2})(\d{2})\d{2}$", version)
    if not m:
        raise DatasetError(f"ip-location-db version {version!r} carries no build date")
    return f"{m[1]}-{m[2]}-{m[3]}"


def _read_csv(path: Path, names: list[str]) -> pa.Table:
    if not path.exists():
        raise DatasetError(f"missing {str(path)!r}")
    types = {n: pa.string() for n in names}
    try:
        return pacsv.read_csv(path, read_options=pacsv.ReadOptions(column_names=names),
                              convert_options=pacsv.ConvertOptions(column_types=types))
    except pa.ArrowInvalid as exc:
        raise DatasetError(f"{str(path)!r}: {exc}") from None


def _v4_num(column: pa.ChunkedArray, path: Path) -> pa.FixedSizeBinaryArray:
    try:
        values = np.asarray(column.cast(pa.uint32()).to_numpy(), dtype=np.uint32)
    except pa.ArrowInvalid as exc:
        raise DatasetError(f"{str(path)!r}: {exc}") from None
    return from_ipv4(values)


def _v6_text(column: pa.ChunkedArray, path: Path) -> pa.FixedSizeBinaryArray:
    out = np.zeros((len(column), 16), dtype=np.uint8)
    for i, text in enumerate(column.to_pylist()):  # set-up only: ~170k rows, well under a second
        try:
            out[i] = np.frombuffer(socket.inet_pton(socket.AF_INET6, str(text)), dtype=np.uint8)
        except OSError:
            raise DatasetError(f"{str(path)!r}: row {i + 1}: not an IPv6 address: {text!r}") \
                from None
    return from_matrix(out)


def _layer(package: Path, stem: str, value_names: list[str]) -> pa.Table:
    parts = []
    for family in ("ipv4", "ipv6"):
        path = package / (f"{stem}-ipv4-num.csv" if family == "ipv4" else f"{stem}-ipv6.csv")
        raw = _read_csv(path, ["low", "high", *value_names])
        conv = _v4_num if family == "ipv4" else _v6_text
        cols = {"low": conv(raw.column("low"), path), "high": conv(raw.column("high"), path)}
        for name in value_names:
            cols[name] = raw.column(name)
        parts.append(pa.table(cols))
    return pa.concat_tables(parts)


def build_ip_location_db(source: str | os.PathLike[str], out: str | os.PathLike[str]) -> DatasetInfo:
    """Convert ``@ip-location-db/asn`` and ``@ip-location-db/asn-country`` (the npm packages'
    directory, e.g. ``datasets/node_modules/@ip-location-db``) into a dataset at ``out``."""
    source, out = Path(source), Path(out)
    asn_pkg, country_pkg = source / "asn", source / "asn-country"
    version = _package_version(asn_pkg)
    country_version = _package_version(country_pkg)
    asn = _layer(asn_pkg, "asn", ["asn", "as_name"])
    try:
        asn_numbers = asn.column("asn").cast(pa.uint32())
    except pa.ArrowInvalid as exc:
        raise DatasetError(f"{str(asn_pkg)!r}: AS numbers: {exc}") from None
    n = asn.num_rows
    asn_table = pa.table({
        "low": asn.column("low"), "high": asn.column("high"), "asn": asn_numbers,
        "as_name": asn.column("as_name").dictionary_encode(),
        "country": pa.nulls(n, pa.string()).dictionary_encode()})
    country = _layer(country_pkg, "asn-country", ["country"])
    m = country.num_rows
    country_table = pa.table({
        "low": country.column("low"), "high": country.column("high"),
        "asn": pa.array(np.zeros(m, dtype=np.uint32)),
        "as_name": pa.nulls(m, pa.string()).dictionary_encode(),
        "country": country.column("country").dictionary_encode()})
    layers = {"asn.arrow": RangeTable.from_arrow(asn_table, ("asn", "as_name")),
              "country.arrow": RangeTable.from_arrow(country_table, ("country",))}
    versions = version if version == country_version else f"{version}+{country_version}"
    info = DatasetInfo(IP_LOCATION_DB, versions, version_date(version),
                       "CC BY 4.0 (asn), CC0 1.0 (asn-country)", IP_LOCATION_DB_ATTRIBUTION,
                       built_from=f"npm @ip-location-db/asn@{version}, "
                                  f"@ip-location-db/asn-country@{country_version} "
                                  f"(built {time.strftime('%Y-%m-%d', time.gmtime())})")
    return write_dataset(out, info, layers)


def is_current(source: str | os.PathLike[str], out: str | os.PathLike[str]) -> bool:
    """True when ``out`` holds the dataset built from the packages' current versions."""
    source, out = Path(source), Path(out)
    try:
        info = read_info(out)
        version = _package_version(source / "asn")
        country_version = _package_version(source / "asn-country")
    except DatasetError:
        return False
    expected = version if version == country_version else f"{version}+{country_version}"
    return info.source == IP_LOCATION_DB and info.version == expected
