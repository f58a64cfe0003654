"""Importing flow files: CSV or NDJSON in the canonical field names, and ``nfdump -o csv``.

Files are read in blocks of bytes and parsed by Arrow, so memory stays at one block whatever
the file's size; each block is converted column-wise and appended to the store.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from flowatlas.addresses import AddressError, pack_many
from flowatlas.ingest import Pipeline, pipeline_for
from flowatlas.query.filter import PROTOCOLS, TCP_FLAGS
from flowatlas.schema import ADDRESS_FIELDS, FIELD_NAMES, TIME_TYPE, SchemaError, conform
from flowatlas.store import FlowStore

BLOCK_BYTES = 32 << 20
IMPORT_FORMATS = ("auto", "csv", "ndjson", "nfdump")

# nfdump -o csv column -> canonical column (nfdump 1.7).
NFDUMP_COLUMNS = {
    "ts": "time_start", "te": "time_end", "sa": "src_addr", "da": "dst_addr", "sp": "src_port",
    "dp": "dst_port", "pr": "protocol", "flg": "tcp_flags", "ipkt": "packets", "ibyt": "bytes",
    "in": "in_if", "out": "out_if", "sas": "src_as", "das": "dst_as", "ra": "exporter",
}
# nfdump prints TCP flags as 8 positions, CEUAPRSF, '.' for unset.
_NFDUMP_FLAG_ORDER = "CEUAPRSF"


class ImportError_(ValueError):
    """A file that cannot be imported; the message names the file, line and problem."""


@dataclass
class ImportReport:
    path: str
    format: str
    rows: int = 0
    bytes_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    """Rows the ingest pipeline did not store, by reason (e.g. ``time_too_old``)."""


def detect_format(path: Path) -> str:
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip()
    if head.startswith(b"{"):
        return "ndjson"
    first = head.split(b"\n", 1)[0].decode(errors="replace")
    columns = [c.strip() for c in first.split(",")]
    if "ts" in columns and "sa" in columns and "da" in columns:
        return "nfdump"
    return "csv"


def import_file(store: FlowStore, path: str | os.PathLike[str], fmt: str = "auto",
                progress: Callable[[int], None] | None = None,
                pipeline: Pipeline | None = None) -> ImportReport:
    """Append every flow of ``path`` that the ingest pipeline keeps to ``store``;
    ``progress`` gets bytes consumed."""
    p = Path(path)
    if not p.is_file():
        raise ImportError_(f"{p}: no such file")
    if fmt not in IMPORT_FORMATS:
        raise ImportError_(f"unknown format {fmt!r}; use one of {', '.join(IMPORT_FORMATS)}")
    fmt = detect_format(p) if fmt == "auto" else fmt
    report = ImportReport(str(p), fmt)
    pipeline = pipeline if pipeline is not None else pipeline_for(store)
    before = Counter(pipeline.drops.by_reason)
    blocks = _ndjson_blocks(p) if fmt == "ndjson" else _csv_blocks(p, nfdump=fmt == "nfdump")
    for first_line, size, table in blocks:
        try:
            canonical = _from_nfdump(table) if fmt == "nfdump" else _from_canonical(table)
            report.rows += store.append(pipeline(canonical))
        except (AddressError, SchemaError, pa.ArrowInvalid, ValueError) as exc:
            raise ImportError_(f"{p}: in the block starting at line {first_line}: {exc}") from exc
        report.bytes_read += size
        if progress:
            progress(size)
    report.dropped = dict(pipeline.drops.by_reason - before)
    return report


def _csv_blocks(path: Path, nfdump: bool) -> Iterator[tuple[int, int, pa.Table]]:
    """Blocks of whole lines parsed by Arrow, the header reused; stops at nfdump's summary."""
    with path.open("rb") as fh:
        header = fh.readline()
        if not header.strip():
            raise ImportError_(f"{path}: empty file")
        names = [c.strip() for c in header.decode().strip().split(",")]
        _check_columns(path, names, nfdump)
        line = 2
        carry = b""
        done = False
        while not done:
            chunk = fh.read(BLOCK_BYTES)
            done = not chunk
            data = carry + chunk
            if not done:
                cut = data.rfind(b"\n") + 1
                data, carry = data[:cut], data[cut:]
            summary = data.find(b"\nSummary") if nfdump else -1
            if nfdump and data.startswith(b"Summary"):
                summary = 0
            if summary >= 0:
                data, done = data[: summary + 1], True
            if not data.strip():
                continue
            try:
                table = pacsv.read_csv(
                    io.BytesIO(data),
                    read_options=pacsv.ReadOptions(column_names=names),
                    convert_options=pacsv.ConvertOptions(
                        column_types={c: pa.string() for c in names}, strings_can_be_null=False
                    ),
                )
            except pa.ArrowInvalid as exc:
                raise ImportError_(f"{path}: CSV error in the block starting at line {line}: "
                                   f"{exc}") from exc
            yield line, len(data), table
            line += data.count(b"\n")


def _ndjson_blocks(path: Path) -> Iterator[tuple[int, int, pa.Table]]:
    with path.open("rb") as fh:
        line = 1
        carry = b""
        while True:
            chunk = fh.read(BLOCK_BYTES)
            data = carry + chunk
            if chunk:
                cut = data.rfind(b"\n") + 1
                data, carry = data[:cut], data[cut:]
            if not data.strip():
                if not chunk:
                    return
                continue
            try:
                table = pajson.read_json(io.BytesIO(data))
            except pa.ArrowInvalid as exc:
                raise ImportError_(f"{path}: JSON error in the block starting at line {line}: "
                                   f"{_first_bad_json_line(data, line)}") from exc
            yield line, len(data), table
            line += data.count(b"\n")
            if not chunk:
                return


def _first_bad_json_line(data: bytes, first_line: int) -> str:
    for i, raw in enumerate(data.splitlines()):
        try:
            json.loads(raw)
        except ValueError as exc:
            return f"line {first_line + i}: {exc}"
    return "malformed JSON"


def _check_columns(path: Path, names: list[str], nfdump: bool) -> None:
    required = ("ts", "sa", "da", "ibyt") if nfdump else ("time_start", "src_addr", "dst_addr", "bytes")
    missing = [c for c in required if c not in names]
    if missing:
        raise ImportError_(f"{path}: header lacks required column(s) {', '.join(missing)} "
                           f"(found: {', '.join(names[:20])})")


def _times(column: pa.ChunkedArray | pa.Array) -> pa.Array | pa.ChunkedArray:
    """ISO text (zone optional, UTC assumed) or epoch seconds to µs UTC timestamps."""
    if pa.types.is_timestamp(column.type):
        return column.cast(TIME_TYPE) if column.type.tz else pc.assume_timezone(column, "UTC")
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        micros = pc.multiply(column.cast(pa.float64()), 1e6).cast(pa.int64())
        return micros.cast(TIME_TYPE)
    text = pc.utf8_trim_whitespace(column.cast(pa.string()))
    if pc.all(pc.match_substring_regex(text, r"^\d+(\.\d+)?$")).as_py():
        return _times(text.cast(pa.float64()))
    # Dates alone mean midnight; times without a zone are UTC.
    text = pc.replace_substring_regex(text, r"^(\d{4}-\d\d-\d\d)$", r"\1 00:00:00")
    zoned = pc.match_substring_regex(text, r"(Z|[+-]\d\d:?\d\d)$")
    text = pc.if_else(zoned, text, pc.binary_join_element_wise(text, "Z", ""))
    return text.cast(TIME_TYPE)


def _addresses(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    return pack_many(column)


# The identity columns `query -o csv` adds (formats/identity.py): derived from the addresses, so
# a re-imported export drops them (the store derives them again).
DERIVED = frozenset(f"{side}_{field}" for side in ("src", "dst")
                    for field in ("asn", "as_name", "country"))


def _from_canonical(table: pa.Table) -> pa.Table:
    unknown = [c for c in table.column_names if c not in FIELD_NAMES and c not in DERIVED]
    if unknown:
        raise SchemaError(f"unknown column(s) {', '.join(unknown)}")
    out = {}
    for name in table.column_names:
        if name in DERIVED:
            continue
        col = table.column(name)
        if name in ADDRESS_FIELDS:
            out[name] = _addresses(col)
        elif name in ("time_start", "time_end"):
            out[name] = _times(col)
        elif name == "protocol" and pa.types.is_string(col.type):
            out[name] = _protocols(col)
        else:
            out[name] = col
    return conform(pa.table(out))


def _from_nfdump(table: pa.Table) -> pa.Table:
    out = {}
    for src, dst in NFDUMP_COLUMNS.items():
        if src not in table.column_names:
            continue
        col = table.column(src)
        if dst in ADDRESS_FIELDS:
            out[dst] = _addresses(col)
        elif dst in ("time_start", "time_end"):
            out[dst] = _times(col)
        elif dst == "protocol":
            out[dst] = _protocols(col)
        elif dst == "tcp_flags":
            out[dst] = _nfdump_flags(col)
        else:
            out[dst] = pc.utf8_trim_whitespace(col).cast(pa.uint64())
    return conform(pa.table(out))


def _protocols(column: pa.ChunkedArray | pa.Array) -> pa.Array | pa.ChunkedArray:
    text = pc.utf8_lower(pc.utf8_trim_whitespace(column.cast(pa.string())))
    names = pa.array(list(PROTOCOLS))
    numbers = pa.array(list(PROTOCOLS.values()), pa.uint8())
    idx = pc.index_in(text, value_set=names)
    named = pc.take(numbers, idx)
    numeric = pc.match_substring_regex(text, r"^\d+$")
    if not pc.all(pc.or_(pc.is_valid(idx), numeric)).as_py():
        bad = pc.filter(text, pc.invert(pc.or_(pc.is_valid(idx), numeric)))[0].as_py()
        raise SchemaError(f"unknown protocol {bad!r}")
    fallback = pc.if_else(numeric, text, "0").cast(pa.uint8())
    return pc.coalesce(named, fallback)


def _nfdump_flags(column: pa.ChunkedArray | pa.Array) -> pa.Array | pa.ChunkedArray:
    text = pc.utf8_trim_whitespace(column.cast(pa.string()))
    flags = pa.array([0] * len(text), pa.uint8()) if len(text) else pa.array([], pa.uint8())
    padded = pc.utf8_rpad(text, 8, ".")
    for i, letter in enumerate(_NFDUMP_FLAG_ORDER):
        bit = pc.equal(pc.utf8_slice_codeunits(padded, i, i + 1), letter)
        flags = pc.bit_wise_or(flags, pc.if_else(bit, TCP_FLAGS[letter], 0).cast(pa.uint8()))
    return flags
