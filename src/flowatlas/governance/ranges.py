"""Vectorised membership of 16-byte address columns in sets of prefixes.

Opt-out filtering, pseudonymisation classes and scope checks all ask "which of these addresses
fall inside any of those prefixes"; each address becomes two big-endian 64-bit halves so one
prefix is four numpy comparisons over the whole column.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from flowatlas.addresses import Prefix, to_matrix


def halves(matrix: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    m = np.ascontiguousarray(matrix, dtype=np.uint8)
    hi = m[:, :8].copy().view(">u8").reshape(-1).astype(np.uint64)
    lo = m[:, 8:].copy().view(">u8").reshape(-1).astype(np.uint64)
    return hi, lo


def _split(raw: bytes) -> tuple[np.uint64, np.uint64]:
    return np.uint64(int.from_bytes(raw[:8], "big")), np.uint64(int.from_bytes(raw[8:], "big"))


def in_prefixes(
    column: pa.Array | pa.ChunkedArray | npt.NDArray[np.uint8], prefixes: Sequence[Prefix]
) -> npt.NDArray[np.bool_]:
    """True where the address lies inside any of ``prefixes`` (nulls are outside)."""
    matrix = column if isinstance(column, np.ndarray) else to_matrix(column)
    hi, lo = halves(matrix)
    out = np.zeros(len(hi), dtype=bool)
    for p in prefixes:
        lh, ll = _split(p.low)
        hh, hl = _split(p.high)
        above = (hi > lh) | ((hi == lh) & (lo >= ll))
        below = (hi < hh) | ((hi == hh) & (lo <= hl))
        out |= above & below
    if not isinstance(column, np.ndarray) and column.null_count:
        valid = column.is_valid()
        out &= np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool)
    return out
