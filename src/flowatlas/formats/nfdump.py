"""nfdump's flow layouts: ``-o line``, ``long``, ``extended`` and ``fmt:<format string>``.

Each token (``%ts %td %pr %sap %dap %pkt %byt %fl ...``) becomes one fixed-width text column,
built by Arrow string kernels over the whole batch; a layout joins them with its literal text.
Widths, headers, number scaling (``1.2 M``, decimal units), condensed IPv6 (``2001:db..11:2222``),
ICMP type.code in the destination port and the ``Summary:`` line follow nfdump 1.7 (checked
against Debian's nfdump on the same records in tests/test_output_peers.py).

flowatlas stores no ToS and counts one flow per record, so ``%tos`` prints 0 and ``%fl`` 1, as
nfdump does for such records.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from flowatlas.formats.bulk import Sink, string_bytes
from flowatlas.formats.text import PSEUDONYM_MARK, PSEUDONYM_SUFFIX, address_text, protocol_text

LAYOUTS = {
    "line": "%ts %td %pr %sap -> %dap %pkt %byt %fl",
    "long": "%ts %td %pr %sap -> %dap %flg %tos %pkt %byt %fl",
    "extended": "%ts %td %pr %sap -> %dap %flg %tos %pkt %byt %pps %bps %bpp %fl",
}
_FLAG_LETTERS = "CEUAPRSF"
_ICMP = (1, 58)


class FormatError(ValueError):
    """A format string nfdump's way that cannot be read."""


@dataclass(frozen=True)
class _Cols:
    """The values of one batch that tokens are built from (computed once per batch)."""

    table: pa.Table
    start_ms: npt.NDArray[np.int64]
    end_ms: npt.NDArray[np.int64]
    tz: str  # times print in the column's zone (UTC, or the --tz display zone)

    @property
    def duration_ms(self) -> npt.NDArray[np.int64]:
        return self.end_ms - self.start_ms

    def col(self, name: str) -> pa.Array:
        return self.table.column(name).combine_chunks()

    def ints(self, name: str) -> npt.NDArray[np.int64]:
        return np.asarray(self.col(name).to_numpy(zero_copy_only=False), dtype=np.int64)

    def address(self, name: str) -> pa.Array:
        """Text of an address column, IPv6 condensed to 16 characters, pseudonyms marked."""
        text = address_text(self.col(name))
        long = pc.greater(pc.utf8_length(text), 16)
        short = pc.binary_join_element_wise(pc.utf8_slice_codeunits(text, 0, 7), "..",
                                            pc.utf8_slice_codeunits(text, -7), "")
        text = pc.if_else(long, short, text)
        mark = name + PSEUDONYM_SUFFIX
        if mark in self.table.column_names:
            text = pc.if_else(pc.fill_null(self.col(mark), False),
                              pc.binary_join_element_wise(PSEUDONYM_MARK, text, ""), text)
        return text

    def is_v4(self, name: str) -> npt.NDArray[np.bool_]:
        from flowatlas.addresses import to_matrix

        m = to_matrix(self.col(name))
        return np.asarray((m[:, :10] == 0).all(axis=1) & (m[:, 10] == 0xFF) & (m[:, 11] == 0xFF))

    def port(self, name: str) -> pa.Array:
        """Port text; for ICMP the destination port carries type.code (nfdump's 3.3)."""
        port = self.ints(name)
        text = _digits(port)
        if name == "dst_port":
            icmp = np.isin(self.ints("protocol"), _ICMP)
            if icmp.any():
                tc = pc.binary_join_element_wise(_digits(port >> 8), _digits(port & 0xFF), ".")
                text = pc.if_else(pa.array(icmp), tc, text)
        return text


def _digits(values: npt.NDArray[np.int64] | npt.NDArray[np.uint64]) -> pa.Array:
    return pa.array(values).cast(pa.string())


def _lpad(arr: pa.Array, width: int) -> pa.Array:
    return pc.utf8_lpad(arr, width=width, padding=" ")


def _rpad(arr: pa.Array, width: int) -> pa.Array:
    return pc.utf8_rpad(arr, width=width, padding=" ")


def scaled(values: npt.NDArray[np.float64], fixed: bool = True) -> pa.Array:
    """nfdump's number format: plain below a million, else ``%5.1f M`` (G, T; decimal units)."""
    v = np.asarray(values, dtype=np.float64)
    out = _digits(np.floor(v).astype(np.uint64))
    for div, unit in ((1e6, "M"), (1e9, "G"), (1e12, "T")):
        big = v >= div
        if not big.any():
            continue
        tenths = np.round(v / div * 10).astype(np.int64)
        text = pc.binary_join_element_wise(_digits(tenths // 10), _digits(tenths % 10), ".")
        if fixed:
            text = _lpad(text, 5)
        text = pc.binary_join_element_wise(text, " " + unit, "")
        out = pc.if_else(pa.array(big), text, out)
    return out


def _time(ms: npt.NDArray[np.int64], tz: str) -> pa.Array:
    ts = pa.array(ms, pa.timestamp("ms", tz=tz))
    return pc.strftime(ts, format="%Y-%m-%d %H:%M:%S")  # %S carries .mmm for a ms timestamp


def _duration(ms: npt.NDArray[np.int64]) -> pa.Array:
    ms = np.maximum(ms, 0)
    days, rest = np.divmod(ms, 86_400_000)
    h, rest = np.divmod(rest, 3_600_000)
    m, rest = np.divmod(rest, 60_000)
    s, milli = np.divmod(rest, 1000)

    def z(v: npt.NDArray[np.int64], w: int) -> pa.Array:
        return pc.utf8_lpad(_digits(v), width=w, padding="0")

    clock = pc.binary_join_element_wise(z(h, 2), ":", z(m, 2), ":", z(s, 2), ".", z(milli, 3), "")
    with_days = pc.binary_join_element_wise(_lpad(_digits(days), 2), "d ", clock, "")
    return _lpad(pc.if_else(pa.array(days > 0), with_days, clock), 16)


def _per_second(count: npt.NDArray[np.int64], ms: npt.NDArray[np.int64]) -> pa.Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(ms > 0, np.floor(count.astype(np.float64) / (ms / 1000.0)), 0.0)
    return _lpad(scaled(rate), 8)


def _endpoint(c: _Cols, addr: str, port: str) -> pa.Array:
    sep = pa.array(np.where(c.is_v4(addr), ":", "."))
    return pc.binary_join_element_wise(_lpad(c.address(addr), 16), sep, _rpad(c.port(port), 5), "")


def _flags(c: _Cols) -> pa.Array:
    flags = c.ints("tcp_flags")
    letters = [pa.array(np.where(flags & (0x80 >> i), ch, "."))
               for i, ch in enumerate(_FLAG_LETTERS)]
    return pc.binary_join_element_wise(*letters, "")


def _const(c: _Cols, text: str) -> pa.Array:
    return pa.array(np.full(c.table.num_rows, text, dtype=object), pa.string())


# token -> (header, renderer); headers are nfdump's, literal text between tokens becomes spaces.
_TOKENS: dict[str, tuple[str, Callable[[_Cols], pa.Array]]] = {
    "ts": ("Date first seen        ", lambda c: _time(c.start_ms, c.tz)),
    "te": ("Date last seen         ", lambda c: _time(c.end_ms, c.tz)),
    "td": ("    Duration    ", lambda c: _duration(c.duration_ms)),
    "pr": ("Proto", lambda c: _rpad(protocol_text(c.col("protocol")), 5)),
    "sa": ("     Src IP Addr", lambda c: _lpad(c.address("src_addr"), 16)),
    "da": ("     Dst IP Addr", lambda c: _lpad(c.address("dst_addr"), 16)),
    "sap": ("     Src IP Addr:Port ", lambda c: _endpoint(c, "src_addr", "src_port")),
    "dap": ("     Dst IP Addr:Port ", lambda c: _endpoint(c, "dst_addr", "dst_port")),
    "sp": ("Src Pt", lambda c: _lpad(c.port("src_port"), 6)),
    "dp": ("Dst Pt", lambda c: _lpad(c.port("dst_port"), 6)),
    "sas": ("Src AS", lambda c: _lpad(_digits(c.ints("src_as")), 6)),
    "das": ("Dst AS", lambda c: _lpad(_digits(c.ints("dst_as")), 6)),
    "in": (" Input", lambda c: _lpad(_digits(c.ints("in_if")), 6)),
    "out": ("Output", lambda c: _lpad(_digits(c.ints("out_if")), 6)),
    "pkt": (" Packets", lambda c: _lpad(scaled(c.ints("packets").astype(np.float64)), 8)),
    "byt": ("   Bytes", lambda c: _lpad(scaled(c.ints("bytes").astype(np.float64)), 8)),
    "fl": ("Flows", lambda c: _lpad(_const(c, "1"), 5)),
    "flg": ("   Flags", _flags),
    "tos": ("Tos", lambda c: _lpad(_const(c, "0"), 3)),
    "pps": ("     pps", lambda c: _per_second(c.ints("packets"), c.duration_ms)),
    "bps": ("     bps", lambda c: _per_second(c.ints("bytes") * 8, c.duration_ms)),
    "bpp": ("   Bpp", lambda c: _lpad(_digits(np.where(
        c.ints("packets") > 0, c.ints("bytes") // np.maximum(c.ints("packets"), 1), 0)), 6)),
    "ra": ("       Router IP", lambda c: _lpad(c.address("exporter"), 16)),
}
# Longest names first, so %sap is not read as %sa followed by "p".
_TOKEN_RE = re.compile(r"%(" + "|".join(sorted(_TOKENS, key=len, reverse=True)) + r")")


@dataclass(frozen=True)
class Layout:
    """A parsed format string: literal text and tokens, in order."""

    text: str
    parts: tuple[tuple[bool, str], ...]  # (is_token, token name or literal)

    @classmethod
    def parse(cls, text: str) -> Layout:
        """``line``/``long``/``extended`` or ``fmt:%ts %sa ...`` (the ``fmt:`` already removed)."""
        template = LAYOUTS.get(text, text)
        parts: list[tuple[bool, str]] = []
        pos = 0
        while pos < len(template):
            i = template.find("%", pos)
            if i < 0:
                parts.append((False, template[pos:]))
                break
            if i > pos:
                parts.append((False, template[pos:i]))
            m = _TOKEN_RE.match(template, i)
            if not m:
                word = re.match(r"%\w*", template[i:])
                bad = word.group(0) if word else "%"
                raise FormatError(f"unknown format token {bad!r} at column {i + 1} of "
                                  f"{template!r}; known: "
                                  + " ".join("%" + t for t in _TOKENS))
            parts.append((True, m.group(1)))
            pos = m.end()
        if not any(tok for tok, _ in parts):
            raise FormatError(f"format {template!r} has no %token (e.g. %ts %sap %dap %byt)")
        return cls(template, tuple(parts))

    @property
    def header(self) -> str:
        return "".join(_TOKENS[v][0] if tok else " " * len(v) for tok, v in self.parts)

    def lines(self, table: pa.Table) -> pa.Array:
        """One text line per flow (each ending in a newline), for the whole batch at once."""
        n = table.num_rows
        if n == 0:
            return pa.array([], pa.string())
        start = table.column("time_start").cast(pa.int64()).to_numpy() // 1000
        end = table.column("time_end").cast(pa.int64()).to_numpy() // 1000
        c = _Cols(table, start, end, table.schema.field("time_start").type.tz or "UTC")
        pieces: list[pa.Array | str] = []
        for tok, v in self.parts:
            pieces.append(_TOKENS[v][1](c) if tok else v)
        pieces.append("\n")
        if not any(isinstance(p, pa.Array) for p in pieces):
            raise FormatError("a layout needs a token")
        out = pc.binary_join_element_wise(*pieces, "")
        assert isinstance(out, pa.Array)
        return out


class LayoutWriter:
    """Flows as nfdump text lines: a header, the lines, and nfdump's ``Summary:`` line.

    ``quiet`` (nfdump ``-q``) leaves out the header and the summary.
    """

    def __init__(self, sink: Sink, layout: Layout, *, quiet: bool = False) -> None:
        self._sink = sink
        self._layout = layout
        self._quiet = quiet
        self._started = False
        self.rows = 0
        self._bytes = 0
        self._packets = 0
        self._first: int | None = None
        self._last: int | None = None

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        t = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        if not self._started and not self._quiet:
            self._sink.write((self._layout.header + "\n").encode())
        self._started = True
        if t.num_rows == 0:
            return
        for buf in string_bytes(self._layout.lines(t)):
            self._sink.write(memoryview(buf))
        self.rows += t.num_rows
        self._bytes += int(pc.sum(t.column("bytes")).as_py() or 0)
        self._packets += int(pc.sum(t.column("packets")).as_py() or 0)
        first = int(pc.min(t.column("time_start").cast(pa.int64())).as_py()) // 1000
        last = int(pc.max(t.column("time_end").cast(pa.int64())).as_py()) // 1000
        self._first = first if self._first is None else min(self._first, first)
        self._last = last if self._last is None else max(self._last, last)

    def summary(self) -> str:
        """nfdump's summary line: totals, and averages over the flows' time span."""
        span = ((self._last or 0) - (self._first or 0)) / 1000.0
        bps = int(self._bytes * 8 / span) if span > 0 else 0
        pps = int(self._packets / span) if span > 0 else 0
        bpp = self._bytes // self._packets if self._packets else 0

        def num(v: int) -> str:
            return str(scaled(np.array([float(v)]), fixed=False)[0].as_py())

        return (f"Summary: total flows: {self.rows}, total bytes: {num(self._bytes)}, "
                f"total packets: {num(self._packets)}, avg bps: {num(bps)}, avg pps: {pps}, "
                f"avg bpp: {bpp}")

    def close(self) -> None:
        if not self._started and not self._quiet:
            self._sink.write((self._layout.header + "\n").encode())
        if not self._quiet:
            self._sink.write((self.summary() + "\n").encode())
