"""Arrow results into text people read: addresses, ISO times, protocol names, pseudonym marks.

Results keep 16-byte addresses and real timestamps until this module turns them into text, once,
for the CLI and the HTTP API alike (the bulk writers and the nfdump layouts build on it).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowatlas.addresses import texts
from flowatlas.schema import ADDRESS_COLUMNS, ADDRESS_TYPE

PSEUDONYM_SUFFIX = "_pseudonymised"
"""A boolean column ``<address column>_pseudonymised`` says which cells hold a pseudonym."""

PSEUDONYM_MARK = "~"
"""Prefix of a pseudonymised address in tables and nfdump layouts (never in CSV/JSON cells)."""

# IANA protocol keywords, as nfdump prints them; other numbers print as numbers.
PROTOCOL_NAMES: dict[int, str] = {
    1: "ICMP", 2: "IGMP", 4: "IPIP", 6: "TCP", 17: "UDP", 41: "IPv6", 47: "GRE", 50: "ESP",
    51: "AH", 58: "ICMP6", 89: "OSPF", 103: "PIM", 112: "VRRP", 132: "SCTP",
}
_PROTO_TABLE = pa.array([PROTOCOL_NAMES.get(i, str(i)) for i in range(256)], pa.string())
# Result columns that hold a protocol number (flows, `top -s proto`, trace candidates).
PROTOCOL_COLUMNS = frozenset({"protocol", "proto"})


def is_address(field: pa.Field) -> bool:
    fixed16 = pa.types.is_fixed_size_binary(field.type) and field.type.byte_width == 16
    return bool(fixed16 or (pa.types.is_binary(field.type) and field.name in ADDRESS_COLUMNS))


def address_text(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A 16-byte address column as text (nulls stay null)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not pa.types.is_fixed_size_binary(arr.type):
        arr = arr.cast(ADDRESS_TYPE)
    if arr.null_count:
        text = texts(arr.fill_null(bytes(16)))
        return pc.if_else(pc.is_valid(arr), text, pa.scalar(None, pa.string()))
    return texts(arr)


_UTC = ("UTC", "Etc/UTC", "+00:00", "Z")


def in_zone(table: pa.Table | pa.RecordBatch, tz: str | None) -> pa.Table:
    """Timestamps to be shown in ``tz`` (an IANA name or +HH:MM): a change of type only."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if tz is None or tz in _UTC:
        return table
    fields = [pa.field(f.name, pa.timestamp("us", tz=tz)) if pa.types.is_timestamp(f.type) else f
              for f in table.schema]
    return table.cast(pa.schema(fields))


def iso_text(col: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Timestamps as ISO 8601: UTC with a ``Z``, or, for a column carrying a display zone
    (``--tz``), local time with its offset; fractions only where there are any."""
    tz = col.type.tz
    if tz not in (None, *_UTC):
        text = pc.strftime(col.cast(pa.timestamp("us", tz=tz)), format="%Y-%m-%dT%H:%M:%S%Ez")
        return pc.replace_substring_regex(text, r"\.000000([+-])", "\\1")
    # UTC: the naive cast prints the same wall time some 20x faster than strftime.
    text = col.cast(pa.timestamp("us")).cast(pa.string())
    text = pc.replace_substring(text, " ", "T", max_replacements=1)
    text = pc.replace_substring_regex(text, r"(\.000000)?$", "Z", max_replacements=1)
    return text


def iso(value: object) -> str | None:
    """One time (a datetime, or anything with ``isoformat``) in the same ISO form as tables."""
    if value is None:
        return None
    fmt = getattr(value, "isoformat", None)
    if fmt is None:
        return str(value)
    text = str(fmt())
    if text.endswith("+00:00"):
        text = text[:-6] + "Z"
    return text.replace(".000000Z", "Z")


def protocol_text(col: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Protocol numbers as nfdump's names (TCP, UDP, ICMP...); unknown numbers as digits."""
    idx = pc.fill_null(col, 0).cast(pa.int64())
    names = pc.take(_PROTO_TABLE, pc.if_else(pc.and_(pc.greater_equal(idx, 0),
                                                     pc.less(idx, 256)), idx, 0))
    return pc.if_else(pc.is_valid(col), names, pa.scalar(None, pa.string()))


def marked(table: pa.Table) -> pa.Table:
    """Pseudonymised addresses prefixed with ``~`` and the marker columns dropped (for views
    a person reads); a table without marker columns comes back unchanged."""
    marks = [n for n in table.column_names if n.endswith(PSEUDONYM_SUFFIX)
             and n[: -len(PSEUDONYM_SUFFIX)] in table.column_names]
    for mark in marks:
        name = mark[: -len(PSEUDONYM_SUFFIX)]
        i = table.column_names.index(name)
        col = table.column(i)
        if not pa.types.is_string(col.type):
            col = address_text(col)
        flag = pc.fill_null(table.column(mark), False)
        table = table.set_column(i, name, pc.if_else(
            flag, pc.binary_join_element_wise(PSEUDONYM_MARK, col, ""), col))
        table = table.drop_columns([mark])
    return table


def readable(table: pa.Table, *, times: bool = True) -> pa.Table:
    """The same table with addresses as text and (with ``times``) timestamps as ISO 8601 text.

    Marker columns (``*_pseudonymised``) stay as booleans: CSV and JSON keep addresses parseable.
    """
    columns = []
    for field, col in zip(table.schema, table.columns, strict=True):
        if is_address(field):
            col = address_text(col)
        elif times and pa.types.is_timestamp(field.type):
            col = iso_text(col)
        columns.append(col)
    return pa.Table.from_arrays(columns, names=table.column_names)


def to_records(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts of JSON-ready values: addresses as text, timestamps as ISO 8601."""
    records: list[dict[str, Any]] = readable(table).to_pylist()
    return records


def to_json(table: pa.Table) -> str:
    return json.dumps(to_records(table), default=str, indent=1)


# Integers that name something (a port, a protocol, an AS, an interface, a hop) print as they
# are; counts get thousands separators.
_IDENTIFIER_PARTS = ("port", "proto", "_as", "asn", "_if", "source_id", "hop", "position",
                     "alternative", "sampling", "direction")


def _is_identifier(name: str) -> bool:
    return name == "as" or any(p in name for p in _IDENTIFIER_PARTS)


def display(table: pa.Table) -> tuple[list[str], list[list[str]], list[bool]]:
    """A result as terminal cells: (columns, rows of text, right-aligned per column).

    Addresses as text (pseudonyms marked ``~``), times as ISO, protocols by name, counts with
    thousands separators, identifiers (ports, protocols, AS numbers) without.
    """
    table = marked(readable(table))
    columns = table.column_names
    cells: list[list[str]] = []
    right: list[bool] = []
    for field, col in zip(table.schema, table.columns, strict=True):
        name = field.name
        numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
        if name in PROTOCOL_COLUMNS and pa.types.is_integer(field.type):
            cells.append(_strings(protocol_text(col)))
            right.append(False)
            continue
        right.append(numeric)
        if pa.types.is_integer(field.type):
            values = col.to_pylist()
            fmt = "{}" if _is_identifier(name) else "{:,}"
            cells.append(["" if v is None else fmt.format(v) for v in values])
        elif pa.types.is_floating(field.type):
            cells.append(["" if v is None or (isinstance(v, float) and np.isnan(v))
                          else f"{v:,.2f}" for v in col.to_pylist()])
        elif pa.types.is_boolean(field.type):
            cells.append(["" if v is None else str(v) for v in col.to_pylist()])
        else:
            cells.append(["" if v is None else str(v) for v in col.to_pylist()])
    rows = [list(r) for r in zip(*cells, strict=True)] if cells else []
    return columns, rows, right


def display_value(name: str, value: Any) -> str:
    """One loose value (a control-plane row, not an Arrow result) as a table cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and _is_identifier(name) else f"{value:,.2f}"
    if isinstance(value, int):
        return str(value) if _is_identifier(name) else f"{value:,}"
    return str(value)


def _strings(col: pa.Array | pa.ChunkedArray) -> list[str]:
    return ["" if v is None else str(v) for v in col.to_pylist()]
