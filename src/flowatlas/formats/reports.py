"""Investigation reports as tables with 16-byte addresses, and as one JSON document.

A report is rendered here once: the CLI table, the CLI's JSON and the HTTP API all take these
tables (the API scope-checks and pseudonymises them first), so a trace reads the same, with the
same rounding, wherever it is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from flowatlas.formats.text import iso, to_records
from flowatlas.schema import ADDRESS_TYPE

if TYPE_CHECKING:
    from flowatlas.analytics.trace import TraceReport

DIGITS = 4
"""Scores, correlations and confidences are rounded to this many decimals, everywhere."""
CANDIDATES_PER_HOP = 5

PATH_SCHEMA = pa.schema([("alternative", pa.int32()), ("position", pa.int32()),
                         ("addr", ADDRESS_TYPE), ("confidence", pa.float64()),
                         ("stopped", pa.string())])
HOP_SCHEMA = pa.schema([("hop", pa.int32()), ("relay", ADDRESS_TYPE),
                        ("threshold", pa.float64()), ("confidence", pa.float64()),
                        ("chosen", pa.bool_()), ("note", pa.string())])
CANDIDATE_SCHEMA = pa.schema([
    ("hop", pa.int32()), ("src_addr", ADDRESS_TYPE), ("dst_addr", ADDRESS_TYPE),
    ("src_port", pa.int32()), ("dst_port", pa.int32()), ("protocol", pa.int32()),
    ("score", pa.float64()), ("rho", pa.float64()), ("rho_reverse", pa.float64()),
    ("counting", pa.float64()), ("ratio", pa.float64()), ("overlap", pa.float64()),
    ("start_offset_s", pa.float64()), ("accepted", pa.bool_()), ("confidence", pa.float64()),
])


def _r(x: float) -> float:
    return round(float(x), DIGITS)


def trace_tables(report: TraceReport) -> dict[str, pa.Table]:
    """``path`` (best first: alternative 0, origin first), ``hops`` and ``candidates``."""
    path: dict[str, list[Any]] = {n: [] for n in PATH_SCHEMA.names}
    paths = [(report.nodes, report.confidence, report.stopped), *report.alternatives]
    for alt, (nodes, conf, stopped) in enumerate(paths):
        for pos, raw in enumerate(nodes):
            path["alternative"].append(alt)
            path["position"].append(pos)
            path["addr"].append(raw)
            path["confidence"].append(_r(conf))
            path["stopped"].append(stopped)
    hops: dict[str, list[Any]] = {n: [] for n in HOP_SCHEMA.names}
    cand: dict[str, list[Any]] = {n: [] for n in CANDIDATE_SCHEMA.names}
    for i, hop in enumerate(report.hops, 1):
        hops["hop"].append(i)
        hops["relay"].append(hop.relay)
        hops["threshold"].append(_r(hop.threshold))
        hops["confidence"].append(_r(hop.confidence))
        hops["chosen"].append(hop.chosen is not None)
        hops["note"].append(hop.note)
        for c in hop.candidates[:CANDIDATES_PER_HOP]:
            s = c.session
            cand["hop"].append(i)
            cand["src_addr"].append(s.src.tobytes())
            cand["dst_addr"].append(s.dst.tobytes())
            cand["src_port"].append(s.sport)
            cand["dst_port"].append(s.dport)
            cand["protocol"].append(s.proto)
            for name in ("score", "rho", "rho_reverse", "counting", "ratio", "overlap",
                         "start_offset_s", "confidence"):
                cand[name].append(_r(getattr(c, name)))
            cand["accepted"].append(c is hop.chosen)
    return {"path": pa.table(path, schema=PATH_SCHEMA),
            "hops": pa.table(hops, schema=HOP_SCHEMA),
            "candidates": pa.table(cand, schema=CANDIDATE_SCHEMA)}


def trace_document(report: TraceReport, tables: dict[str, pa.Table], *,
                   target: str | None = None, scrub: Callable[[str], str] = str) -> dict[str, Any]:
    """The JSON document of a trace (``tables`` as :func:`trace_tables` gave them, or as the
    gate disclosed them); ``target`` as the asker named it, ``scrub`` for messages."""
    return {
        "target": report.target if target is None else target,
        "at": iso(report.at),
        "confidence": _r(report.confidence),
        "stopped": scrub(report.stopped),
        **{name: to_records(t) for name, t in tables.items()},
    }
