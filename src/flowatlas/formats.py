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
from flowatlas.schema import ADDRESS_COLUMNS

FORMATS = ("table", "csv", "json", "ndjson")


def _is_address(field: pa.Field) -> bool:
    fixed16 = pa.types.is_fixed_size_binary(field.type) and field.type.byte_width == 16
    return bool(fixed16 or (pa.types.is_binary(field.type) and field.name in ADDRESS_COLUMNS))


def to_records(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts of JSON-ready values: addresses as text, timestamps as ISO 8601."""
    columns: dict[str, list[Any]] = {}
    for field, col in zip(table.schema, table.columns, strict=True):
        if _is_address(field):
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


_PROTO_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 58: "ICMP6", 132: "SCTP"}
_FLAG_LETTERS = "CEUAPRSF"


def flow_lines(table: pa.Table) -> pa.Table:
    """The compact one-line-per-flow view analysts know from nfdump, for terminals and pages."""
    recs = to_records(table)
    out: dict[str, list[Any]] = {k: [] for k in
                                 ("start", "duration", "proto", "src", "dst", "flags", "packets",
                                  "bytes", "sampling")}
    for r in recs:
        dur = (table_time(r["time_end"]) - table_time(r["time_start"]))
        out["start"].append(r["time_start"].replace("T", " ").rstrip("Z")[:23])
        out["duration"].append(round(dur, 3))
        out["proto"].append(_PROTO_NAMES.get(r["protocol"], str(r["protocol"])))
        out["src"].append(_endpoint(r["src_addr"], r["src_port"]))
        out["dst"].append(_endpoint(r["dst_addr"], r["dst_port"]))
        flags = r["tcp_flags"]
        out["flags"].append("".join(c if flags & (0x80 >> i) else "." for i, c in
                                    enumerate(_FLAG_LETTERS)) if r["protocol"] == 6 else "")
        out["packets"].append(r["packets"])
        out["bytes"].append(r["bytes"])
        out["sampling"].append(r["sampling_rate"])
    return pa.table(out)


def table_time(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
