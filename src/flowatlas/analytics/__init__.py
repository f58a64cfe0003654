"""Investigations over the query engine: peer graphs, beacons, victims of a C2, relay tracing.

Each function takes an :class:`~flowatlas.atlas.Atlas` and a selection or window, fetches what it
needs in a few well-pruned queries, does the arithmetic vectorised in numpy, and returns a
dataclass that carries its evidence (``to_table()``/``to_dict()``), never a bare verdict.
"""

from __future__ import annotations

from flowatlas.analytics.beacons import BeaconReport, find_beacons
from flowatlas.analytics.graph import PeerGraph, peer_graph
from flowatlas.analytics.netclass import NetClassTable
from flowatlas.analytics.trace import TraceReport, trace
from flowatlas.analytics.victims import VictimReport, classify_peers

__all__ = [
    "BeaconReport",
    "NetClassTable",
    "PeerGraph",
    "TraceReport",
    "VictimReport",
    "classify_peers",
    "find_beacons",
    "peer_graph",
    "trace",
]
