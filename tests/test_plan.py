"""Planning: endpoint hints (what a match must touch) and day groups for newest-first queries."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

from flowatlas.query.expr import Direction
from flowatlas.query.filter import parse_filter
from flowatlas.query.plan import day_windows, endpoint_hint
from flowatlas.query.window import Window


def test_hints_follow_and_or_not() -> None:
    h = endpoint_hint(parse_filter("src ip 10.0.0.1 and port 443"))
    assert h is not None and h.direction is Direction.SRC and len(h.prefixes) == 1
    h = endpoint_hint(parse_filter("ip 10.0.0.1 and dst net 10.9.0.0/16"))
    assert h is not None and h.direction is Direction.DST          # one-sided beats either-side
    h = endpoint_hint(parse_filter("src ip 10.0.0.1 or src net 192.0.2.0/24"))
    assert h is not None and h.direction is Direction.SRC and len(h.prefixes) == 2
    h = endpoint_hint(parse_filter("src ip 10.0.0.1 or dst ip 10.0.0.2"))
    assert h is not None and h.direction is Direction.ANY and len(h.prefixes) == 2
    assert endpoint_hint(parse_filter("ip 10.0.0.1 or port 22")) is None
    assert endpoint_hint(parse_filter("not ip 10.0.0.1")) is None
    assert endpoint_hint(parse_filter("proto tcp")) is None


def test_day_windows_tile_the_window_newest_first() -> None:
    days = [date(2026, 8, 1) + timedelta(days=i) for i in range(40)]
    window = Window(datetime(2026, 8, 3, 6, tzinfo=UTC), datetime(2026, 9, 5, 12, tzinfo=UTC))
    inside = [d for d in days if date(2026, 8, 3) <= d <= date(2026, 9, 5)]
    parts = list(day_windows(inside, window, newest_first=True))
    assert parts[0].until == window.until and parts[-1].since == window.since
    for newer, older in itertools.pairwise(parts):
        assert older.until == newer.since            # no gap, no overlap
    assert len(parts) == 3                           # 1 day, 16 days, the rest
    oldest = list(day_windows(inside, window, newest_first=False))
    assert oldest[0].since == window.since and oldest[-1].until == window.until


def test_day_windows_skip_a_day_the_window_only_touches_at_midnight() -> None:
    window = Window(None, datetime(2026, 8, 2, tzinfo=UTC))
    parts = list(day_windows([date(2026, 8, 1), date(2026, 8, 2)], window, newest_first=True))
    assert [(p.since, p.until) for p in parts] == [
        (datetime(2026, 8, 1, tzinfo=UTC), datetime(2026, 8, 2, tzinfo=UTC))]
