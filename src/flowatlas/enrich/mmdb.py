"""A user's MaxMind-format database (``.mmdb``: GeoLite2, DB-IP, IPinfo, ip-location-db) as a
dataset of the store: ``flowatlas enrich load FILE``.

The file is read once with the ``maxminddb`` package and its networks become one range table,
so answers use the same vectorised lookup as the default dataset (no MMDB reader per address).
AS number, AS name and country are taken from whichever of the common layouts the records use:
MaxMind/DB-IP (``autonomous_system_number``, ``autonomous_system_organization``,
``country.iso_code``), IPinfo (``asn`` as ``AS15169``, ``as_name``, ``country``) and
ip-location-db (``country_code``).
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from flowatlas.addresses import pack
from flowatlas.enrich.dataset import DatasetError, DatasetInfo, write_dataset
from flowatlas.enrich.lookup import STORE_DIR
from flowatlas.enrich.table import RangeTable

LAYER = "mmdb.arrow"


def _asn(record: dict[str, Any]) -> int:
    value = record.get("autonomous_system_number", record.get("asn"))
    if isinstance(value, str):
        m = re.fullmatch(r"(?i)\s*(?:AS)?(\d+)\s*", value)
        value = int(m[1]) if m else 0
    return int(value) if isinstance(value, int) and 0 < value < 2**32 else 0


def _name(record: dict[str, Any]) -> str | None:
    for key in ("autonomous_system_organization", "as_name", "asn_name", "organization"):
        value = record.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _country(record: dict[str, Any]) -> str | None:
    for key in ("country", "registered_country"):
        value = record.get(key)
        if isinstance(value, dict):
            value = value.get("iso_code")
        if isinstance(value, str) and len(value) == 2 and value.isalpha():
            return value.upper()
    value = record.get("country_code")
    if isinstance(value, str) and len(value) == 2 and value.isalpha():
        return value.upper()
    return None


def read_mmdb(path: str | os.PathLike[str]) -> tuple[RangeTable, DatasetInfo]:
    """Every network of an MMDB file as one range table, and what the file says of itself."""
    import maxminddb

    path = Path(path)
    try:
        reader = maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise DatasetError(f"{str(path)!r}: not a MaxMind DB file ({exc})") from None
    lows: list[bytes] = []
    highs: list[bytes] = []
    asns: list[int] = []
    names: list[str | None] = []
    countries: list[str | None] = []
    try:
        meta = reader.metadata()
        for network, record in reader:  # load time only: one pass over the file's networks
            if not isinstance(record, dict):
                continue
            asn, name, country = _asn(record), _name(record), _country(record)
            if not (asn or name or country):
                continue
            lows.append(pack(network.network_address))
            highs.append(pack(network.broadcast_address))
            asns.append(asn)
            names.append(name)
            countries.append(country)
    except (maxminddb.InvalidDatabaseError, ValueError) as exc:
        raise DatasetError(f"{str(path)!r}: damaged MaxMind DB file ({exc})") from None
    finally:
        reader.close()
    if not lows:
        raise DatasetError(f"{str(path)!r}: no network has an AS number, AS name or country "
                           f"(database type {meta.database_type!r})")
    provides = tuple(f for f, present in (("asn", any(asns)), ("as_name", any(names)),
                                          ("country", any(countries))) if present)
    table = RangeTable.from_arrow(pa.table({
        "low": pa.array(lows, pa.binary(16)), "high": pa.array(highs, pa.binary(16)),
        "asn": pa.array(asns, pa.uint32()),
        "as_name": pa.array(names, pa.string()).dictionary_encode(),
        "country": pa.array(countries, pa.string()).dictionary_encode(),
    }), provides)
    built = datetime.fromtimestamp(int(meta.build_epoch), UTC)
    description = meta.description if isinstance(meta.description, dict) else {}
    info = DatasetInfo(
        source=str(meta.database_type), version=built.strftime("%Y-%m-%dT%H:%M:%SZ"),
        date=built.date().isoformat(), licence="as the file's provider grants it",
        attribution=str(description.get("en", "")), built_from=f"{path.name} (MMDB)")
    return table, info


def dataset_name(database_type: str) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", database_type.lower()).strip("-.")
    return name or "mmdb"


def load_into_store(path: str | os.PathLike[str], store_root: str | os.PathLike[str],
                    name: str | None = None) -> tuple[str, DatasetInfo]:
    """Convert an MMDB file into a dataset of the store (replacing one of the same name); its
    answers take precedence over the default dataset's. Returns the name and description."""
    table, info = read_mmdb(path)
    name = dataset_name(name or info.source)
    root = Path(store_root) / STORE_DIR / name
    root.parent.mkdir(parents=True, exist_ok=True)
    return name, write_dataset(root, info, {LAYER: table})


def remove_from_store(store_root: str | os.PathLike[str], name: str) -> None:
    root = Path(store_root) / STORE_DIR / name
    if name != dataset_name(name) or not (root / "dataset.json").exists():
        raise DatasetError(f"no dataset {name!r} loaded into {str(store_root)!r}")
    shutil.rmtree(root)
