"""Investigations over the query engine: peer graphs, beacons, victims of a C2, relay tracing.

Each function takes an :class:`~flowatlas.atlas.Atlas` and a selection or window, fetches what it
needs in a few well-pruned queries, does the arithmetic vectorised in numpy, and returns a
dataclass that carries its evidence (``to_table()``/``to_dict()``), never a bare verdict.
"""

from __future__ import annotations
