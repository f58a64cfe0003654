"""Result views shaped for a terminal table (the compact flow view analysts know from nfdump)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowatlas.formats.nfdump import Layout
from flowatlas.formats.text import address_text, marked, protocol_text


def _token(table: pa.Table, token: str) -> pa.Array:
    if table.num_rows == 0:
        return pa.array([], pa.string())
    return pc.utf8_rtrim(Layout.parse(token).lines(table), "\n")


def flow_view(table: pa.Table) -> pa.Table:
    """One short row per flow: start, duration (s), protocol name, endpoints, flags, counts."""
    shown = marked(table)  # pseudonymised addresses as ~text
    start = table.column("time_start").cast(pa.int64()).to_numpy()
    end = table.column("time_end").cast(pa.int64()).to_numpy()
    proto = table.column("protocol")
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "start": _token(table, "%ts"),
        "duration": pa.array(np.round((end - start) / 1e6, 3), pa.float64()),
        "proto": protocol_text(proto),
    }
    for side in ("src", "dst"):
        columns[side] = _endpoint(shown, f"{side}_addr", f"{side}_port")
        # The endpoint's identity, where formats/identity.py added it (AS names stay in the
        # full formats: they would crowd the one-line view).
        for extra in (f"{side}_asn", f"{side}_country"):
            if extra in table.column_names:
                columns[extra] = table.column(extra)
    columns.update({
        "flags": pc.if_else(pc.equal(proto, 6), _token(table, "%flg"), ""),
        "packets": table.column("packets"),
        "bytes": table.column("bytes"),
        "sampling": table.column("sampling_rate"),
    })
    return pa.table(columns)


def _endpoint(t: pa.Table, addr: str, port: str) -> pa.Array:
    col = t.column(addr)
    text = col if pa.types.is_string(col.type) else address_text(col)
    ports = t.column(port).cast(pa.string())
    bracketed = pc.binary_join_element_wise("[", text, "]:", ports, "")
    plain = pc.binary_join_element_wise(text, ":", ports, "")
    return pc.if_else(pc.match_substring(text, ":"), bracketed, plain)
