"""Vectorised membership of 16-byte address columns in prefixes and in prefix classes.

Opt-out filtering, pseudonymisation classes and scope checks all ask "which of these addresses
fall inside any of those prefixes". They share the analytics' sorted-range lookups
(``RangeSet`` for plain prefix sets, ``NetClassTable`` for the operator's class table): each
address column becomes ``V16`` keys, searched with ``np.searchsorted``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from flowatlas.addresses import Prefix, to_matrix
from flowatlas.analytics.frame import ADDR, Addrs, RangeSet
from flowatlas.analytics.netclass import NetClassTable

Column: TypeAlias = pa.Array | pa.ChunkedArray | npt.NDArray[np.uint8]


def address_keys(column: Column) -> Addrs:
    """An Arrow address column or an (n, 16) byte matrix as ``V16`` keys."""
    matrix = column if isinstance(column, np.ndarray) else to_matrix(column)
    keys: Addrs = np.ascontiguousarray(matrix, dtype=np.uint8).view(ADDR).ravel()
    return keys


def _valid(column: Column, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    if not isinstance(column, np.ndarray) and column.null_count:
        valid = column.is_valid()
        mask &= np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool)
    return mask


def in_prefixes(column: Column, prefixes: Sequence[Prefix]) -> npt.NDArray[np.bool_]:
    """True where the address lies inside any of ``prefixes`` (nulls are outside)."""
    return _valid(column, RangeSet(list(prefixes)).contains(address_keys(column)))


def in_classes(
    column: Column, table: NetClassTable, classes: Collection[str]
) -> npt.NDArray[np.bool_]:
    """True where the address's most specific class in ``table`` is one of ``classes``."""
    return _valid(column, table.member(address_keys(column), classes))
