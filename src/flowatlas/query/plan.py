"""Endpoint hints: the address ranges a flow must touch for a filter to match it.

When every match of a filter has an endpoint inside known prefixes, an engine can read only the
copies of the data sorted by that endpoint and let Parquet statistics skip everything else. The
hint is a necessary condition, never a sufficient one: engines still apply the whole filter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from flowatlas.addresses import Prefix
from flowatlas.query.expr import AddrMatch, And, Direction, Expr, Or
from flowatlas.query.window import Window

MAX_HINT_PREFIXES = 256
"""Past this many ranges the pruning costs more than the scan it saves."""


@dataclass(frozen=True)
class EndpointHint:
    direction: Direction
    prefixes: tuple[Prefix, ...]


def endpoint_hint(expr: Expr) -> EndpointHint | None:
    """The narrowest address constraint implied by ``expr``, or None when there is none."""
    hint = _hint(expr)
    if hint is None or len(hint.prefixes) > MAX_HINT_PREFIXES:
        return None
    return hint


def _hint(expr: Expr) -> EndpointHint | None:
    if isinstance(expr, AddrMatch):
        return EndpointHint(expr.direction, expr.prefixes)
    if isinstance(expr, And):
        hints = [h for h in (_hint(c) for c in expr.children) if h is not None]
        if not hints:
            return None
        # A one-sided hint reads one copy; among equals, the fewest ranges prune best.
        return min(hints, key=lambda h: (h.direction is Direction.ANY, len(h.prefixes)))
    if isinstance(expr, Or):
        maybe = [_hint(c) for c in expr.children]
        known = [h for h in maybe if h is not None]
        if len(known) != len(maybe):
            return None
        directions = {h.direction for h in known}
        direction = directions.pop() if len(directions) == 1 else Direction.ANY
        prefixes = tuple(sorted({p for h in known for p in h.prefixes}))
        return EndpointHint(direction, prefixes)
    return None


def day_windows(days: Sequence[date], window: Window, newest_first: bool,
                growth: int = 16) -> Iterator[Window]:
    """Sub-windows over groups of 1, growth, growth**2, ... whole days, newest (or oldest) first.

    Day partitions hold flows by start time, so every flow of a later group is newer than every
    flow of an earlier one: a "newest N flows" query can stop at the first groups that give N
    rows. A heavy host is answered from its last day; a rare one costs a few queries, not one a
    day (each query pays a fixed cost per file it opens).
    """
    ordered = sorted(set(days), reverse=newest_first)
    i, size = 0, 1
    while i < len(ordered):
        group = ordered[i : i + size]
        since = datetime.combine(min(group), time(), UTC)
        until = datetime.combine(max(group) + timedelta(days=1), time(), UTC)
        if window.since and window.since > since:
            since = window.since
        if window.until and window.until < until:
            until = window.until
        if since < until:
            yield Window(since, until)
        i += size
        size *= growth
