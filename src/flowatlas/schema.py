"""The canonical flow record: one Arrow schema from decoder to UI.

Every producer (collector, simulator, importers) emits record batches in exactly this schema and
every consumer (store, engines, analytics, API) reads it. docs/schema.md documents each field.
"""

from __future__ import annotations

import pyarrow as pa

ADDRESS_TYPE = pa.binary(16)
"""IPv4 and IPv6 alike: 16 bytes, big-endian, IPv4 mapped into ::ffff:0:0/96."""

TIME_TYPE = pa.timestamp("us", tz="UTC")

# Times the store can hold: it files flows by calendar day, and a day before 0001-01-01 or from
# 10000-01-01 on has no date (nor a Python datetime to render it as). The ingest pipeline drops
# flows outside this range (reason ``time_unholdable``); ``FlowStore.append`` refuses them.
HOLDABLE_MIN_US = -62_135_596_800 * 1_000_000
"""0001-01-01T00:00:00Z in µs since the epoch."""
HOLDABLE_END_US = 253_402_300_800 * 1_000_000
"""10000-01-01T00:00:00Z in µs since the epoch (exclusive)."""

FLOW_SCHEMA = pa.schema(
    [
        pa.field("time_start", TIME_TYPE, nullable=False),
        pa.field("time_end", TIME_TYPE, nullable=False),
        pa.field("src_addr", ADDRESS_TYPE, nullable=False),
        pa.field("dst_addr", ADDRESS_TYPE, nullable=False),
        pa.field("src_port", pa.uint16(), nullable=False),
        pa.field("dst_port", pa.uint16(), nullable=False),
        pa.field("protocol", pa.uint8(), nullable=False),
        pa.field("tcp_flags", pa.uint8(), nullable=False),
        pa.field("packets", pa.uint64(), nullable=False),
        pa.field("bytes", pa.uint64(), nullable=False),
        pa.field("sampling_rate", pa.uint32(), nullable=False),
        pa.field("exporter", ADDRESS_TYPE, nullable=False),
        pa.field("source_id", pa.uint32(), nullable=False),
        pa.field("in_if", pa.uint32(), nullable=False),
        pa.field("out_if", pa.uint32(), nullable=False),
        pa.field("src_as", pa.uint32(), nullable=False),
        pa.field("dst_as", pa.uint32(), nullable=False),
    ]
)

FIELD_NAMES: tuple[str, ...] = tuple(FLOW_SCHEMA.names)
ADDRESS_FIELDS = frozenset({"src_addr", "dst_addr", "exporter"})
ADDRESS_COLUMNS = ADDRESS_FIELDS | {"ip", "peer", "local"}
"""Result columns that hold addresses: canonical fields and the aggregation keys made of them."""
TIME_FIELDS = frozenset({"time_start", "time_end"})

# Fields a missing value may default to 0 (or 1 for the sampling rate) when importing.
DEFAULTS: dict[str, int] = {
    "src_port": 0,
    "dst_port": 0,
    "protocol": 0,
    "tcp_flags": 0,
    "packets": 1,
    "sampling_rate": 1,
    "source_id": 0,
    "in_if": 0,
    "out_if": 0,
    "src_as": 0,
    "dst_as": 0,
}


class SchemaError(ValueError):
    """A batch does not fit the canonical schema."""


def conform(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    """Return ``batch`` as a table in the canonical column order and types.

    Missing optional columns get their defaults; a missing required column (times, addresses,
    bytes) or a value that does not cast is a :class:`SchemaError` naming the column.
    """
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    n = table.num_rows
    columns: list[pa.Array | pa.ChunkedArray] = []
    for field in FLOW_SCHEMA:
        if field.name in table.column_names:
            col = table.column(field.name)
            if not col.type.equals(field.type):
                try:
                    col = col.cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise SchemaError(f"column {field.name!r}: cannot use {col.type}: {exc}") from exc
            if col.null_count:
                raise SchemaError(f"column {field.name!r}: {col.null_count} missing values")
            columns.append(col)
        elif field.name == "exporter":
            columns.append(pa.array([bytes(16)] * n, ADDRESS_TYPE) if n else pa.array([], ADDRESS_TYPE))
        elif field.name in DEFAULTS:
            columns.append(pa.nulls(n, field.type).fill_null(DEFAULTS[field.name]))
        elif field.name == "time_end" and "time_start" in table.column_names:
            columns.append(table.column("time_start").cast(TIME_TYPE))
        else:
            raise SchemaError(f"missing required column {field.name!r}")
    return pa.Table.from_arrays(columns, schema=FLOW_SCHEMA)


def empty_table() -> pa.Table:
    return FLOW_SCHEMA.empty_table()
