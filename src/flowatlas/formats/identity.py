"""The identity of every address a result shows: AS number, AS name, country.

One renderer for the CLI and the API: after each address column (``src_addr``, ``dst_addr``,
``ip``, ``peer``, ...; not the exporter, which is the operator's own router) it inserts
``<p>_asn``, ``<p>_as_name`` and ``<p>_country`` where ``<p>`` is the column's name without
``_addr`` (``src_addr`` -> ``src_asn``, ``peer`` -> ``peer_asn``). A cell that holds a
pseudonym (its ``<column>_pseudonymised`` mark is set) gets no identity: the pseudonym's own
lookup would be noise, and the real address's would tell the tenant what the gate hid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowatlas.formats.text import PSEUDONYM_SUFFIX, is_address
from flowatlas.ranges import ADDR, addr_keys

if TYPE_CHECKING:
    from flowatlas.enrich.lookup import Enricher

SKIPPED = frozenset({"exporter"})
SUFFIXES = ("_asn", "_as_name", "_country")


def prefix_of(column: str) -> str:
    return column[: -len("_addr")] if column.endswith("_addr") else column


def identity_columns(table: pa.Table) -> list[str]:
    """The address columns of ``table`` that get an identity."""
    return [f.name for f in table.schema if is_address(f) and f.name not in SKIPPED
            and not f.name.endswith(PSEUDONYM_SUFFIX)
            and f"{prefix_of(f.name)}_asn" not in table.column_names]


def with_identity(table: pa.Table, enrich: Enricher | None) -> pa.Table:
    """``table`` with the identity columns after each of its address columns (unchanged when
    there is no enricher or no dataset)."""
    if enrich is None or not enrich.datasets:
        return table
    names = identity_columns(table)
    if not names:
        return table
    for name in names:
        col = table.column(name)
        hidden = np.zeros(table.num_rows, dtype=bool)
        mark = name + PSEUDONYM_SUFFIX
        if mark in table.column_names:
            hidden |= np.asarray(pc.fill_null(table.column(mark), False), dtype=bool)
        if col.null_count:
            hidden |= ~np.asarray(pc.is_valid(col), dtype=bool)
        keys = addr_keys(col.fill_null(bytes(16)) if col.null_count else col)
        if hidden.any():
            # Looked up as ::, which no dataset knows: clean nulls, and a pseudonym is never
            # looked up at all (not even as itself).
            keys = keys.copy()
            keys[hidden] = np.zeros(1, dtype=ADDR)[0]
        ident = enrich.keys(keys).table()
        at = table.column_names.index(name) + 1
        p = prefix_of(name)
        for suffix, values in zip(SUFFIXES, ident.columns, strict=True):
            table = table.add_column(at, f"{p}{suffix}", values)
            at += 1
    return table
