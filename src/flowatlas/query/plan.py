"""Endpoint hints: the address ranges a flow must touch for a filter to match it.

When every match of a filter has an endpoint inside known prefixes, an engine can read only the
copies of the data sorted by that endpoint and let Parquet statistics skip everything else. The
hint is a necessary condition, never a sufficient one: engines still apply the whole filter.
"""

from __future__ import annotations

import math
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


class DayGroups:
    """Groups of whole days in result order, each sized from what the previous ones gave.

    Day partitions hold flows by start time, so every flow of a later group is newer than every
    flow of an earlier one: "the newest N flows" can stop at the first groups that give N rows.
    The first group is one day. After each group the next is sized to the rate seen so far
    (with 50% slack), and to everything left when nothing matched yet: a heavy host is answered
    from its last day, a rare one in two queries, a middling one in two or three.
    """

    def __init__(self, days: Sequence[date], window: Window, newest_first: bool,
                 wanted: int) -> None:
        self.days = sorted(set(days), reverse=newest_first)
        self.window = window
        self.remaining = wanted
        self._next = 0
        self._size = 1
        self._seen_days = 0
        self._seen_rows = 0

    def __iter__(self) -> Iterator[Window]:
        while self._next < len(self.days) and self.remaining > 0:
            group = self.days[self._next : self._next + self._size]
            self._next += len(group)
            self._seen_days += len(group)
            window = self._window_of(group)
            if window is not None:
                yield window

    def took(self, rows: int) -> None:
        """Report the rows the last group gave."""
        self.remaining -= rows
        self._seen_rows += rows
        left = len(self.days) - self._next
        if self._seen_rows == 0:
            self._size = left
        else:
            per_day = self._seen_rows / self._seen_days
            self._size = max(1, min(left, math.ceil(1.5 * self.remaining / per_day)))

    def _window_of(self, group: Sequence[date]) -> Window | None:
        since = datetime.combine(min(group), time(), UTC)
        last = max(group)
        # A store may hold 9999-12-31 (written before ingest checked times): its day has no
        # following midnight, so its window ends at the last representable moment.
        until = (datetime.max.replace(tzinfo=UTC) if last == date.max
                 else datetime.combine(last + timedelta(days=1), time(), UTC))
        if self.window.since and self.window.since > since:
            since = self.window.since
        if self.window.until and self.window.until < until:
            until = self.window.until
        return Window(since, until) if since < until else None
