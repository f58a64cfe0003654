"""Moved to :mod:`flowatlas.ranges` (shared by governance and analytics alike); these names stay
importable from here for code written before the move."""

from __future__ import annotations

from flowatlas.ranges import in_classes as in_classes
from flowatlas.ranges import in_prefixes as in_prefixes
