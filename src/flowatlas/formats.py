"""Turning Arrow results into what people read: text addresses, ISO times, CSV/JSON/NDJSON.

The CLI and the HTTP API both render through this module, so a flow looks the same everywhere.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from flowatlas.addresses import unpack_many

FORMATS = ("table", "csv", "json", "ndjson")


def _is_address(field: pa.Field) -> bool:
    return bool(pa.types.is_fixed_size_binary(field.type) and field.type.byte_width == 16)


def to_records(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts of JSON-ready values: addresses as text, timestamps as ISO 8601."""
    columns: dict[str, list[Any]] = {}
    for field, col in zip(table.schema, table.columns, strict=True):
        if _is_address(field) or (pa.types.is_binary(field.type) and field.name.endswith("addr")):
            columns[field.name] = unpack_many(col)
        elif pa.types.is_timestamp(field.type):
            columns[field.name] = [
                None if v is None else v.isoformat().replace("+00:00", "Z") for v in col.to_pylist()
            ]
        else:
            columns[field.name] = col.to_pylist()
    names = table.column_names
    return [dict(zip(names, row, strict=True)) for row in zip(*(columns[n] for n in names), strict=True)]


def iter_csv(tables: Iterable[pa.Table], header: bool = True) -> Iterator[str]:
    """CSV text chunk by chunk (streams large results)."""
    first = True
    for table in tables:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if first and header:
            writer.writerow(table.column_names)
        first = False
        for rec in to_records(table):
            writer.writerow(["" if v is None else v for v in rec.values()])
        yield buf.getvalue()


def iter_ndjson(tables: Iterable[pa.Table]) -> Iterator[str]:
    for table in tables:
        yield "".join(json.dumps(rec, default=str) + "\n" for rec in to_records(table))


def to_json(table: pa.Table) -> str:
    return json.dumps(to_records(table), default=str, indent=1)
