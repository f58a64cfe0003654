"""The one template-driven record decoder shared by NetFlow v9 and IPFIX.

A data set is sliced into an (n, record length) byte matrix with ``np.frombuffer`` when the
template is fixed-length, and each wanted field becomes a column by vectorised big-endian
assembly (which also covers reduced-size encoding, RFC 7011 §6.2). Variable-length templates
need a walk to find where each record starts; only that walk is per record, the extraction is
the same vectorised gather.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from flowatlas.collect.templates import Template

Values = dict[int, npt.NDArray[Any]]
"""Element id -> uint64 column (fields of up to 8 bytes) or (n, length) uint8 matrix."""

WIDE = frozenset({27, 28})
"""Elements returned as byte matrices (IPv6 addresses), never as integers."""


class RecordError(ValueError):
    """A data set that does not fit its template."""


def _assemble(cols: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """Big-endian bytes (n, k), k <= 8, to unsigned integers."""
    n, k = cols.shape
    if k in (1, 2, 4, 8):
        return np.ascontiguousarray(cols).view(f">u{k}").reshape(n).astype(np.uint64)
    out = np.zeros(n, dtype=np.uint64)
    for j in range(k):
        out = (out << np.uint64(8)) | cols[:, j].astype(np.uint64)
    return out


def _field_value(cols: npt.NDArray[np.uint8], element: int) -> npt.NDArray[Any] | None:
    """A column; None for an integer element wider than 8 bytes (no wanted IE is)."""
    if element in WIDE:
        return cols
    if cols.shape[1] > 8:
        return None
    return _assemble(cols)


def decode_set(template: Template, data: bytes, start: int, end: int,
               wanted: frozenset[int]) -> tuple[int, Values]:
    """Decode the records of one data set ``data[start:end]``; returns (count, values).

    Only IANA (non-enterprise) fields in ``wanted`` are returned; the rest, enterprise IEs
    included, are skipped by their length. Trailing bytes shorter than one record are padding.
    """
    if template.variable:
        return _decode_variable(template, data, start, end, wanted)
    reclen = template.min_record_length
    if reclen <= 0:
        raise RecordError(f"template {template.template_id} has zero record length")
    n = (end - start) // reclen
    if n <= 0:
        return 0, {}
    matrix = np.frombuffer(data, dtype=np.uint8, count=n * reclen, offset=start).reshape(n, reclen)
    return n, decode_rows(template, matrix, wanted)


def decode_rows(template: Template, matrix: npt.NDArray[np.uint8],
                wanted: frozenset[int]) -> Values:
    """Wanted fields of an (n, record length) matrix of fixed-length records.

    Integer fields of 1, 2, 4 or 8 bytes are read through one structured big-endian view of
    the whole matrix (no copy per field); other widths are assembled byte by byte.
    """
    plain, odd = _layout(template, wanted)
    values: Values = {}
    if plain.names:
        rec = np.ascontiguousarray(matrix).view(plain).reshape(len(matrix))
        for name in plain.names:
            values[int(name)] = rec[name].astype(np.uint64)
    for element, offset, length in odd:
        value = _field_value(matrix[:, offset:offset + length], element)
        if value is not None:
            values[element] = value
    return values


def _layout(template: Template, wanted: frozenset[int]
            ) -> tuple[np.dtype[Any], list[tuple[int, int, int]]]:
    """(structured dtype of the plain integer fields, [(element, offset, length)] of the rest).

    Cached on the template (``template.layouts``), so an evicted template takes its layouts
    with it."""
    cache = template.layouts
    hit = cache.get(wanted)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    names: list[str] = []
    formats: list[str] = []
    offsets: list[int] = []
    odd: list[tuple[int, int, int]] = []
    seen: set[int] = set()
    offset = 0
    for f in template.fields:
        if f.enterprise == 0 and f.element in wanted and f.element not in seen and f.length:
            seen.add(f.element)
            if f.element not in WIDE and f.length in (1, 2, 4, 8):
                names.append(str(f.element))
                formats.append(f">u{f.length}")
                offsets.append(offset)
            else:
                odd.append((f.element, offset, f.length))
        offset += f.length
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                      "itemsize": max(offset, 1)})
    cache[wanted] = (dtype, odd)
    return dtype, odd


def _decode_variable(template: Template, data: bytes, start: int, end: int,
                     wanted: frozenset[int]) -> tuple[int, Values]:
    fields = template.fields
    minimum = template.min_record_length
    starts: list[list[int]] = [[] for _ in fields]
    lengths: list[list[int]] = [[] for _ in fields]
    pos = start
    # The walk: per record, per variable field, read its length prefix (RFC 7011 §7).
    while end - pos >= max(minimum, 1):
        record_starts: list[int] = []
        record_lengths: list[int] = []
        p = pos
        for f in fields:
            length = f.length
            if f.variable:
                if p >= end:
                    raise RecordError("variable-length field runs past the set")
                length = data[p]
                p += 1
                if length == 255:
                    if p + 2 > end:
                        raise RecordError("variable-length field runs past the set")
                    length = int.from_bytes(data[p:p + 2], "big")
                    p += 2
            record_starts.append(p)
            record_lengths.append(length)
            p += length
        if p > end:
            if all(b == 0 for b in data[pos:end]):
                break  # zero padding at the end of the set
            raise RecordError("record runs past the end of its set")
        for i in range(len(fields)):
            starts[i].append(record_starts[i])
            lengths[i].append(record_lengths[i])
        pos = p  # p > pos: every variable field takes at least its length byte
    n = len(starts[0]) if fields else 0
    values: Values = {}
    if n == 0:
        return 0, values
    buf = np.frombuffer(data, dtype=np.uint8)
    for i, f in enumerate(fields):
        if f.enterprise or f.element not in wanted or f.element in values:
            continue
        s = np.asarray(starts[i], dtype=np.int64)
        ln = np.asarray(lengths[i], dtype=np.int64)
        width = int(ln.max())
        if width == 0:
            continue
        if width > 8 and f.element not in WIDE:
            continue  # not an integer any wanted element can be
        if f.element in WIDE:
            idx = s[:, None] + np.arange(width)
            values[f.element] = buf[np.minimum(idx, len(buf) - 1)] * (np.arange(width) < ln[:, None])
            continue
        # Right-align each value: a shorter field is a reduced-size integer.
        idx = s[:, None] + np.arange(width) - (width - ln[:, None])
        mask = np.arange(width) >= (width - ln[:, None])
        cols = np.where(mask, buf[np.clip(idx, 0, len(buf) - 1)], 0).astype(np.uint8)
        values[f.element] = _assemble(cols)
    return n, values
