"""Planning: endpoint hints (what a match must touch) and day groups for newest-first queries."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

from flowatlas.query.expr import Direction
from flowatlas.query.filter import parse_filter
from flowatlas.query.plan import DayGroups, endpoint_hint
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


def test_day_groups_tile_the_window_newest_first() -> None:
    days = [date(2026, 8, 1) + timedelta(days=i) for i in range(40)]
    window = Window(datetime(2026, 8, 3, 6, tzinfo=UTC), datetime(2026, 9, 5, 12, tzinfo=UTC))
    inside = [d for d in days if date(2026, 8, 3) <= d <= date(2026, 9, 5)]
    groups = DayGroups(inside, window, newest_first=True, wanted=100)
    parts = []
    for part in groups:
        parts.append(part)
        groups.took(10)                              # 10 rows a day: next group sized to fit
    assert parts[0].until == window.until
    for newer, older in itertools.pairwise(parts):
        assert older.until == newer.since            # no gap, no overlap
    assert parts[0].since == datetime(2026, 9, 5, tzinfo=UTC)        # the newest day (half of it)
    assert parts[1].until - parts[1].since == timedelta(days=14)     # 1.5 x 90 wanted / 10 a day
    assert parts[-1].since == window.since and groups.remaining == 100 - 10 * len(parts)


def test_day_groups_jump_to_the_rest_when_nothing_matched() -> None:
    days = [date(2026, 8, 1) + timedelta(days=i) for i in range(30)]
    groups = DayGroups(days, Window(), newest_first=False, wanted=5)
    parts = []
    for part in groups:
        parts.append(part)
        groups.took(0)
    assert len(parts) == 2
    assert parts[0].since == datetime(2026, 8, 1, tzinfo=UTC)
    assert parts[1].until == datetime(2026, 8, 31, tzinfo=UTC)


def test_day_groups_skip_a_day_the_window_only_touches_at_midnight() -> None:
    window = Window(None, datetime(2026, 8, 2, tzinfo=UTC))
    groups = DayGroups([date(2026, 8, 1), date(2026, 8, 2)], window, newest_first=True, wanted=9)
    parts = []
    for part in groups:
        parts.append(part)
        groups.took(0)
    assert [(p.since, p.until) for p in parts] == [
        (datetime(2026, 8, 1, tzinfo=UTC), datetime(2026, 8, 2, tzinfo=UTC))]
