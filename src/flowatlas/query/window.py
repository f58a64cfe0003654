"""Time windows: absolute times, relative spans such as ``7d`` or ``12h``, ``today`` and
``yesterday``, and nfdump's ``-t 2026/11/30.05:00:00-2026/11/30.06:00:00``.

Times written without a zone are read in the display zone (``tz``, UTC unless asked), as nfdump
reads them in the local zone; everything is held in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class WindowError(ValueError):
    """A time that cannot be parsed, or a window that ends before it starts."""


# nfdump's -t time: YYYY[/MM[/dd[.hh[:mm[:ss]]]]], omitted parts at their start.
_NFDUMP_TIME = re.compile(
    r"(\d{4})(?:/(\d{1,2})(?:/(\d{1,2})(?:\.(\d{1,2})(?::(\d{1,2})(?::(\d{1,2}))?)?)?)?)?")


def parse_zone(name: str | None) -> tzinfo:
    """An IANA zone name (``Europe/Berlin``), ``UTC``, or an offset such as ``+02:00``."""
    if not name or name.upper() in ("UTC", "Z"):
        return UTC
    m = re.fullmatch(r"([+-])(\d{1,2}):?(\d{2})?", name.strip())
    if m:
        minutes = int(m.group(2)) * 60 + int(m.group(3) or 0)
        if minutes >= 24 * 60:
            raise WindowError(f"time zone offset {name!r} is out of range")
        from datetime import timezone

        return timezone(timedelta(minutes=minutes if m.group(1) == "+" else -minutes))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError(f"unknown time zone {name!r}: use an IANA name such as "
                          "Europe/Berlin, UTC, or an offset such as +02:00") from None


def zone_name(tz: tzinfo) -> str | None:
    """How Arrow names ``tz`` (an IANA key or +HH:MM); None for UTC."""
    if isinstance(tz, ZoneInfo):
        return None if tz.key in ("UTC", "Etc/UTC") else tz.key
    offset = tz.utcoffset(None)
    if offset is None or offset == timedelta(0):
        return None
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _midnight(now: datetime, tz: tzinfo) -> datetime:
    local = now.astimezone(tz)
    return datetime(local.year, local.month, local.day, tzinfo=tz).astimezone(UTC)


def parse_nfdump_time(text: str, tz: tzinfo = UTC) -> datetime:
    """``2026/11/30.05:00:00``; trailing parts may be left out (``2026/11/30`` is midnight)."""
    m = _NFDUMP_TIME.fullmatch(text.strip())
    if not m:
        raise WindowError(f"cannot read time {text!r}: nfdump's form is YYYY/MM/dd.hh:mm:ss, "
                          "trailing parts optional (2026/11/30.05, 2026/11/30)")
    year, month, day, hour, minute, second = (int(g) if g else None for g in m.groups())
    try:
        local = datetime(year or 1970, month or 1, day or 1, hour or 0, minute or 0,
                         second or 0, tzinfo=tz)
    except ValueError as exc:
        raise WindowError(f"cannot read time {text!r}: {exc}") from None
    return local.astimezone(UTC)


def parse_time(text: str, now: datetime | None = None, tz: tzinfo = UTC) -> datetime:
    """``now``, ``today``, ``yesterday`` (their midnight), ``7d`` (7 days before now),
    ``2026-11-28``, ``2026-11-28T10:00``, nfdump's ``2026/11/28.10:00``, or epoch seconds.

    Times without a zone are in ``tz`` (UTC by default).
    """
    now = now or datetime.now(UTC)
    t = text.strip()
    if t == "now":
        return now
    if t in ("today", "yesterday"):
        return _midnight(now, tz) - timedelta(days=1 if t == "yesterday" else 0)
    if "/" in t:
        return parse_nfdump_time(t, tz)
    m = _RELATIVE.match(t)
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    if re.fullmatch(r"\d{9,11}(\.\d+)?", t):
        return datetime.fromtimestamp(float(t), UTC)
    try:
        parsed = datetime.fromisoformat(t.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise WindowError(
            f"cannot read time {text!r}: use an ISO time (2026-11-28T10:00), a date, epoch "
            "seconds, 'now', 'today', 'yesterday', or a span back from now such as 30m, 12h, "
            "7d, 2w"
        ) from None
    return parsed.replace(tzinfo=tz).astimezone(UTC) if parsed.tzinfo is None \
        else parsed.astimezone(UTC)


@dataclass(frozen=True)
class Window:
    """Half-open ``[since, until)`` on each flow's start; either end may be open.

    ``ends_by`` (nfdump's ``-t``) also asks each flow to have ended by then; a
    :class:`~flowatlas.query.model.Selection` turns it into a filter term, so that every later
    narrowing of the window (day groups, analytics) keeps it.
    """

    since: datetime | None = None
    until: datetime | None = None
    ends_by: datetime | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.until <= self.since:
            raise WindowError(f"window ends ({self.until}) before it starts ({self.since})")

    @classmethod
    def parse(cls, since: str | None, until: str | None, now: datetime | None = None,
              tz: tzinfo = UTC) -> Window:
        now = now or datetime.now(UTC)
        return cls(parse_time(since, now, tz) if since else None,
                   parse_time(until, now, tz) if until else None)

    @classmethod
    def nfdump(cls, text: str, now: datetime | None = None, tz: tzinfo = UTC) -> Window:
        """nfdump's ``-t START[-END]``: flows that start at or after START and end by END
        (both inclusive, as nfdump compares them). ``today`` and ``yesterday`` are whole days
        (today up to now); any time parse_time reads works on either side."""
        now = now or datetime.now(UTC)
        t = text.strip()
        end: datetime | None
        if t in ("today", "yesterday"):
            start = parse_time(t, now, tz)
            end = now if t == "today" else parse_time("today", now, tz) - timedelta(microseconds=1)
        else:
            # The separator is the '-' between two times: not inside an ISO date, so split on
            # the first '-' that follows a nfdump time or stands between spaces.
            m = re.fullmatch(r"(\S+?/[\d/.:]*)\s*-\s*(\S.*)|(.+?)\s+-\s+(.+)", t)
            start_text, end_text = (m.group(1) or m.group(3), m.group(2) or m.group(4)) if m \
                else (t, None)
            start = parse_time(start_text, now, tz)
            end = parse_time(end_text, now, tz) if end_text else None
        if end is not None and end < start:
            raise WindowError(f"time window {text!r} ends before it starts")
        until = end + timedelta(microseconds=1) if end is not None else None
        return cls(start, until, ends_by=end)

    @property
    def span(self) -> timedelta | None:
        if self.since and self.until:
            return self.until - self.since
        return None
