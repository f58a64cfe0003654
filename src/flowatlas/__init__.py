"""flowatlas: an open platform for internet flow telemetry.

The public library: everything in ``__all__`` is importable from here (``from flowatlas import
Atlas, parse_filter``); docs/library.md shows it in use. Names resolve on first use (PEP 562),
so ``import flowatlas`` costs next to nothing — the command line imports this package on every
start and must not pay for pyarrow, DuckDB or numpy before it knows what it will run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # the core object and the store
    "Atlas": "flowatlas.atlas",
    "Profile": "flowatlas.atlas",
    "FlowStore": "flowatlas.store",
    "FLOW_SCHEMA": "flowatlas.schema",
    # selections and queries
    "Selection": "flowatlas.query.model",
    "FlowsQuery": "flowatlas.query.model",
    "AggregateQuery": "flowatlas.query.model",
    "MAX_LIMIT": "flowatlas.query.model",
    "Window": "flowatlas.query.window",
    "parse_time": "flowatlas.query.window",
    "parse_filter": "flowatlas.query.filter",
    # filter expressions (what parse_filter returns; build them directly to skip the text)
    "Expr": "flowatlas.query.expr",
    "ALL": "flowatlas.query.expr",
    "AddrMatch": "flowatlas.query.expr",
    "NumMatch": "flowatlas.query.expr",
    "FlagsMatch": "flowatlas.query.expr",
    "And": "flowatlas.query.expr",
    "Or": "flowatlas.query.expr",
    "Not": "flowatlas.query.expr",
    "Direction": "flowatlas.query.expr",
    "Op": "flowatlas.query.expr",
    "conjoin": "flowatlas.query.expr",
    # addresses
    "Prefix": "flowatlas.addresses",
    "parse_prefix": "flowatlas.addresses",
    "pack": "flowatlas.addresses",
    "unpack": "flowatlas.addresses",
    # investigations
    "peer_graph": "flowatlas.analytics.graph",
    "PeerGraph": "flowatlas.analytics.graph",
    "find_beacons": "flowatlas.analytics.beacons",
    "BeaconReport": "flowatlas.analytics.beacons",
    "classify_peers": "flowatlas.analytics.victims",
    "VictimReport": "flowatlas.analytics.victims",
    "trace": "flowatlas.analytics.trace",
    "TraceParams": "flowatlas.analytics.trace",
    "TraceReport": "flowatlas.analytics.trace",
    "NetClassTable": "flowatlas.ranges",
    # enrichment: AS number, AS name and country of addresses (docs/enrichment.md)
    "enricher": "flowatlas.enrich.lookup",
    "Enricher": "flowatlas.enrich.lookup",
    "Identity": "flowatlas.enrich.lookup",
    "RangeTable": "flowatlas.enrich.table",
    "DatasetInfo": "flowatlas.enrich.dataset",
    # files in, for a store
    "import_file": "flowatlas.importers",
    # errors: each a ValueError/RuntimeError subclass with a one-line message
    "AddressError": "flowatlas.addresses",
    "AnalyticsError": "flowatlas.analytics.frame",
    "DatasetError": "flowatlas.enrich.dataset",
    "EngineError": "flowatlas.engines.base",
    "FilterSyntaxError": "flowatlas.query.filter",
    "NetClassError": "flowatlas.ranges",
    "QueryError": "flowatlas.query.model",
    "StoreError": "flowatlas.store",
    "WindowError": "flowatlas.query.window",
}

__all__ = [
    "ALL",
    "FLOW_SCHEMA",
    "MAX_LIMIT",
    "AddrMatch",
    "AddressError",
    "AggregateQuery",
    "AnalyticsError",
    "And",
    "Atlas",
    "BeaconReport",
    "DatasetError",
    "DatasetInfo",
    "Direction",
    "EngineError",
    "Enricher",
    "Expr",
    "FilterSyntaxError",
    "FlagsMatch",
    "FlowStore",
    "FlowsQuery",
    "Identity",
    "NetClassError",
    "NetClassTable",
    "Not",
    "NumMatch",
    "Op",
    "Or",
    "PeerGraph",
    "Prefix",
    "Profile",
    "QueryError",
    "RangeTable",
    "Selection",
    "StoreError",
    "TraceParams",
    "TraceReport",
    "VictimReport",
    "Window",
    "WindowError",
    "classify_peers",
    "conjoin",
    "enricher",
    "find_beacons",
    "import_file",
    "pack",
    "parse_filter",
    "parse_prefix",
    "parse_time",
    "peer_graph",
    "trace",
    "unpack",
]
"""The names of ``_EXPORTS`` (a literal list, so linters and IDEs read it)."""

if TYPE_CHECKING:  # what mypy and IDEs see; at run time __getattr__ imports on first use
    from flowatlas.addresses import AddressError, Prefix, pack, parse_prefix, unpack
    from flowatlas.analytics.beacons import BeaconReport, find_beacons
    from flowatlas.analytics.frame import AnalyticsError
    from flowatlas.analytics.graph import PeerGraph, peer_graph
    from flowatlas.analytics.trace import TraceParams, TraceReport, trace
    from flowatlas.analytics.victims import VictimReport, classify_peers
    from flowatlas.atlas import Atlas, Profile
    from flowatlas.engines.base import EngineError
    from flowatlas.enrich.dataset import DatasetError, DatasetInfo
    from flowatlas.enrich.lookup import Enricher, Identity, enricher
    from flowatlas.enrich.table import RangeTable
    from flowatlas.importers import import_file
    from flowatlas.query.expr import (
        ALL,
        AddrMatch,
        And,
        Direction,
        Expr,
        FlagsMatch,
        Not,
        NumMatch,
        Op,
        Or,
        conjoin,
    )
    from flowatlas.query.filter import FilterSyntaxError, parse_filter
    from flowatlas.query.model import MAX_LIMIT, AggregateQuery, FlowsQuery, QueryError, Selection
    from flowatlas.query.window import Window, WindowError, parse_time
    from flowatlas.ranges import NetClassError, NetClassTable
    from flowatlas.schema import FLOW_SCHEMA
    from flowatlas.store import FlowStore, StoreError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flowatlas' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once; later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
