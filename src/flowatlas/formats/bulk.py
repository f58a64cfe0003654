"""Bulk output, batch by batch: CSV, NDJSON, JSON, Parquet and Arrow IPC by Arrow's writers.

Every writer takes result batches as the engine yields them and writes each one before the next
is read, so an export of any size runs in the memory of a batch. No Python loop touches rows:
CSV goes through ``pyarrow.csv.CSVWriter``, Parquet through ``pyarrow.parquet.ParquetWriter``,
Arrow through the IPC stream writer, and NDJSON/JSON lines are assembled by string kernels and
written straight from the Arrow string buffer.

Text formats carry addresses as text and times as ISO 8601; Parquet and Arrow carry addresses as
text (what other tools can read) and times as real timestamps.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowatlas.formats.text import readable

BULK_FORMATS = ("csv", "ndjson", "json", "parquet", "arrow")
BINARY_FORMATS = frozenset({"parquet", "arrow"})
MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson",
    "json": "application/json",
    "parquet": "application/vnd.apache.parquet",
    "arrow": "application/vnd.apache.arrow.stream",
}


class Sink(Protocol):
    def write(self, data: Any, /) -> Any: ...


class Writer(Protocol):
    rows: int

    def write(self, batch: pa.RecordBatch | pa.Table) -> None: ...

    def close(self) -> None: ...


def _table(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    return pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch


def string_bytes(lines: pa.Array | pa.ChunkedArray) -> list[pa.Buffer]:
    """The bytes of a string column's values back to back, straight from its data buffer."""
    chunks = lines.chunks if isinstance(lines, pa.ChunkedArray) else [lines]
    out = []
    for arr in chunks:
        if len(arr) == 0:
            continue
        if arr.null_count:
            arr = pc.fill_null(arr, "")
        large = pa.types.is_large_string(arr.type)
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if large else np.int32)
        start, end = int(offsets[arr.offset]), int(offsets[arr.offset + len(arr)])
        data = arr.buffers()[2]
        if data is not None and end > start:
            out.append(data.slice(start, end - start))
    return out


class CsvWriter:
    """RFC 4180 CSV with one header line; values quoted only where they need it, like nfdump."""

    def __init__(self, sink: Sink, *, header: bool = True, schema: pa.Schema | None = None
                 ) -> None:
        self._sink = sink
        self._header = header
        self._schema = schema
        self._writers: dict[str, tuple[pa.Schema, Any]] = {}
        self.rows = 0

    def _write_header(self, names: list[str]) -> None:
        if self._header:
            self._sink.write((",".join(_csv_field(n) for n in names) + "\n").encode())
            self._header = False

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        import pyarrow.csv as pacsv

        t = readable(_table(batch))
        self._write_header(t.column_names)
        if t.num_rows == 0:
            return
        # Arrow's "needed" style quotes every string; "none" refuses a comma. Pick per batch.
        style = "needed" if any(
            pa.types.is_string(f.type) and pc.any(pc.match_substring_regex(c, r'[",\r\n]')).as_py()
            for f, c in zip(t.schema, t.columns, strict=True)) else "none"
        schema, writer = self._writers.get(style, (None, None))
        if writer is None or not t.schema.equals(schema):
            if writer is not None:
                writer.close()
            writer = pacsv.CSVWriter(
                self._sink, t.schema,
                write_options=pacsv.WriteOptions(include_header=False, quoting_style=style))
            self._writers[style] = (t.schema, writer)
        writer.write_table(t)
        self.rows += t.num_rows

    def close(self) -> None:
        if self._schema is not None:
            self._write_header(self._schema.names)
        for _, w in self._writers.values():
            w.close()


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text


class NdjsonWriter:
    """One JSON object per line (``json=True``: one JSON array of the same objects)."""

    def __init__(self, sink: Sink, *, array: bool = False) -> None:
        self._sink = sink
        self._array = array
        self._started = False
        self.rows = 0

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        t = _table(batch)
        if t.num_rows == 0:
            return
        sep = ",\n" if self._array else "\n"
        lines = json_lines(t, suffix=sep)
        if self._array:
            self._sink.write(b"[\n" if not self._started else b",\n")
        buffers = string_bytes(lines)
        for i, buf in enumerate(buffers):
            # The array's last separator becomes the next batch's (or the closing bracket).
            last = self._array and i == len(buffers) - 1
            self._sink.write(memoryview(buf)[: len(buf) - len(sep)] if last else memoryview(buf))
        self._started = True
        self.rows += t.num_rows

    def close(self) -> None:
        if self._array:
            self._sink.write(b"\n]\n" if self._started else b"[]\n")


def json_lines(table: pa.Table, suffix: str = "") -> pa.Array:
    """Each row as a JSON object (text, plus ``suffix``), without a Python loop over rows."""
    parts: list[pa.Array | str] = []
    t = readable(table)
    for i, (field, col) in enumerate(zip(t.schema, t.columns, strict=True)):
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        parts.append(("{" if i == 0 else ", ") + json.dumps(field.name) + ": ")
        parts.append(_json_values(arr))
    parts.append("}" + suffix)
    if t.num_rows == 0:
        return pa.array([], pa.string())
    joined = pc.binary_join_element_wise(*parts, "")
    assert isinstance(joined, pa.Array)
    return joined


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
    else:  # control characters, lists, structs: rare, left to json.dumps
        text = pa.array([json.dumps(v, default=str) for v in arr.to_pylist()], pa.string())
    return pc.fill_null(text, "null")


class ArrowWriter:
    """Parquet (``parquet``) or an Arrow IPC stream (``arrow``) for piping into other tools."""

    def __init__(self, sink: Sink, fmt: str, *, schema: pa.Schema | None = None) -> None:
        self._sink = sink
        self._fmt = fmt
        self._schema = schema
        self._writer: Any = None
        self.rows = 0

    def _open(self, schema: pa.Schema) -> None:
        if self._fmt == "parquet":
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(self._sink, schema, compression="zstd")
        else:
            self._writer = pa.ipc.new_stream(self._sink, schema)

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        t = readable(_table(batch), times=False)
        if self._writer is None:
            self._open(t.schema)
        if t.num_rows:
            self._writer.write_table(t)
            self.rows += t.num_rows

    def close(self) -> None:
        if self._writer is None and self._schema is not None:
            self._open(readable(self._schema.empty_table(), times=False).schema)
        if self._writer is not None:
            self._writer.close()


def open_writer(fmt: str, sink: Sink, *, header: bool = True, schema: pa.Schema | None = None
                ) -> Writer:
    """A writer of ``fmt`` (one of :data:`BULK_FORMATS`) onto a binary ``sink``.

    ``schema`` lets an empty result still write its header (CSV) or schema (Parquet, Arrow).
    """
    if fmt == "csv":
        return CsvWriter(sink, header=header, schema=schema)
    if fmt in ("ndjson", "json"):
        return NdjsonWriter(sink, array=fmt == "json")
    if fmt in BINARY_FORMATS:
        return ArrowWriter(sink, fmt, schema=schema)
    raise ValueError(f"unknown bulk format {fmt!r}: use one of {', '.join(BULK_FORMATS)}")


def write_bulk(batches: Iterable[pa.RecordBatch | pa.Table], fmt: str, sink: Sink, *,
               header: bool = True, schema: pa.Schema | None = None) -> int:
    """Write every batch to ``sink`` in ``fmt``; returns the rows written."""
    writer = open_writer(fmt, sink, header=header, schema=schema)
    for batch in batches:
        writer.write(batch)
    writer.close()
    return writer.rows


class _Chunks(io.RawIOBase):
    """A sink that hands what was written to it back out, for streamed responses."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        b = bytes(data)
        self.parts.append(b)
        return len(b)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def iter_bulk(batches: Iterable[pa.RecordBatch | pa.Table], fmt: str, *, header: bool = True,
              schema: pa.Schema | None = None) -> Iterator[bytes]:
    """``fmt`` bytes chunk by chunk (one or more per batch), for streamed HTTP responses."""
    sink = _Chunks()
    writer = open_writer(fmt, sink, header=header, schema=schema)
    for batch in batches:
        writer.write(batch)
        if chunk := sink.take():
            yield chunk
    writer.close()
    if chunk := sink.take():
        yield chunk


def iter_csv(tables: Iterable[pa.Table], header: bool = True) -> Iterator[str]:
    """CSV text chunk by chunk (see :class:`CsvWriter`)."""
    for chunk in iter_bulk(tables, "csv", header=header):
        yield chunk.decode()


def iter_ndjson(tables: Iterable[pa.Table]) -> Iterator[str]:
    """NDJSON text chunk by chunk (see :class:`NdjsonWriter`)."""
    for chunk in iter_bulk(tables, "ndjson"):
        yield chunk.decode()
