"""Turning Arrow results into what people read: text addresses, ISO times, CSV/JSON/NDJSON.

The CLI and the HTTP API both render through this module, so a flow looks the same everywhere.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from flowatlas.addresses import unpack_many
from flowatlas.schema import ADDRESS_COLUMNS

FORMATS = ("table", "csv", "json", "ndjson")


def _is_address(field: pa.Field) -> bool:
    fixed16 = pa.types.is_fixed_size_binary(field.type) and field.type.byte_width == 16
    return bool(fixed16 or (pa.types.is_binary(field.type) and field.name in ADDRESS_COLUMNS))


_UTC = ("UTC", "Etc/UTC", "+00:00", "Z")


def in_zone(table: pa.Table, tz: str | None) -> pa.Table:
    """Timestamps to be shown in ``tz`` (an IANA name or +HH:MM): a change of type only."""
    if tz is None or tz in _UTC:
        return table
    fields = [pa.field(f.name, pa.timestamp("us", tz=tz)) if pa.types.is_timestamp(f.type) else f
              for f in table.schema]
    return table.cast(pa.schema(fields))


def readable(table: pa.Table) -> pa.Table:
    """The same table with addresses as text and timestamps as ISO 8601 strings (vectorised)."""
    columns = []
    for field, col in zip(table.schema, table.columns, strict=True):
        if _is_address(field):
            col = pa.array(unpack_many(col), pa.string())
        elif pa.types.is_timestamp(field.type) and field.type.tz not in (None, *_UTC):
            # A display zone (--tz) is carried as the column's zone: local time and offset.
            text = pc.strftime(col.cast(pa.timestamp("us", tz=field.type.tz)),
                               format="%Y-%m-%dT%H:%M:%S%Ez")
            col = pc.replace_substring_regex(text, r"\.000000([+-])", "\\1")
        elif pa.types.is_timestamp(field.type):
            text = pc.strftime(col.cast(pa.timestamp("us", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
            col = pc.replace_substring_regex(text, r"\.000000Z$", "Z")
        columns.append(col)
    return pa.Table.from_arrays(columns, names=table.column_names)


def to_records(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts of JSON-ready values: addresses as text, timestamps as ISO 8601."""
    records: list[dict[str, Any]] = readable(table).to_pylist()
    return records


def iter_csv(tables: Iterable[pa.Table], header: bool = True) -> Iterator[str]:
    """CSV text chunk by chunk (streams large results), written by Arrow's CSV writer.

    Values are quoted only where a string holds a delimiter, quote or line break, so plain
    results read like nfdump's CSV.
    """
    first = True
    for table in tables:
        t = readable(table)
        buf = io.BytesIO()
        if first and header:
            buf.write((",".join(_csv_field(n) for n in t.column_names) + "\n").encode())
        first = False
        needs_quotes = any(
            pa.types.is_string(f.type)
            and pc.any(pc.match_substring_regex(col, r'[",\r\n]')).as_py()
            for f, col in zip(t.schema, t.columns, strict=True)
        )
        options = pacsv.WriteOptions(include_header=False,
                                     quoting_style="needed" if needs_quotes else "none")
        pacsv.write_csv(t, buf, write_options=options)
        yield buf.getvalue().decode()


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text


def iter_ndjson(tables: Iterable[pa.Table]) -> Iterator[str]:
    """One JSON object per line, assembled column-wise by Arrow string kernels."""
    for table in tables:
        if table.num_rows:
            yield "\n".join(json_lines(table).to_pylist()) + "\n"


def json_lines(table: pa.Table) -> pa.Array:
    """Each row as a JSON object (text), without a Python loop over rows."""
    parts: list[pa.Array | str] = []
    t = readable(table)
    for i, (field, col) in enumerate(zip(t.schema, t.columns, strict=True)):
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        parts.append(("{" if i == 0 else ", ") + json.dumps(field.name) + ": ")
        parts.append(_json_values(arr))
    parts.append("}")
    if t.num_rows == 0:
        return pa.array([], pa.string())
    scalars = [pa.array([p] * t.num_rows, pa.string()) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*scalars, "")


def _json_values(arr: pa.Array) -> pa.Array:
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        text = arr.cast(pa.string())
        if pa.types.is_floating(arr.type):
            text = pc.if_else(pc.is_finite(arr), text, "null")
    elif pa.types.is_boolean(arr.type):
        text = pc.if_else(arr, "true", "false")
    elif pa.types.is_string(arr.type) and not pc.any(
            pc.match_substring_regex(arr, r"[\x00-\x1f]")).as_py():
        escaped = pc.replace_substring(pc.replace_substring(arr, "\\", "\\\\"), '"', '\\"')
        text = pc.binary_join_element_wise('"', escaped, '"', "")
    else:
        text = pa.array([json.dumps(v, default=str) for v in arr.to_pylist()], pa.string())
    return pc.fill_null(text, "null")


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
