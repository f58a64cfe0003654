"""Enrichment: the AS number, AS name and country of addresses, offline (docs/enrichment.md).

One concept per module: ``table`` (a range table and its file), ``dataset`` (datasets on disk and
building the default one), ``lookup`` (the vectorised, layered lookup), ``mmdb`` (a user's
MaxMind-format database), ``stage`` (the ingest pipeline's enrichment stage).
"""

from flowatlas.enrich.dataset import (
    Dataset,
    DatasetError,
    DatasetInfo,
    build_ip_location_db,
    default_dir,
)
from flowatlas.enrich.lookup import Enricher, Identity, enricher
from flowatlas.enrich.mmdb import load_into_store, read_mmdb
from flowatlas.enrich.table import RangeTable, RangeTableError

__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "Enricher",
    "Identity",
    "RangeTable",
    "RangeTableError",
    "build_ip_location_db",
    "default_dir",
    "enricher",
    "load_into_store",
    "read_mmdb",
]
