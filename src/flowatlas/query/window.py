"""Time windows: absolute times or relative spans such as ``7d`` or ``12h``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class WindowError(ValueError):
    """A time that cannot be parsed, or a window that ends before it starts."""


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """``now``, ``7d`` (7 days before now), ``2026-11-28``, ``2026-11-28T10:00``, or epoch seconds.

    Times without a zone are UTC.
    """
    now = now or datetime.now(UTC)
    t = text.strip()
    if t == "now":
        return now
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
            "seconds, 'now', or a span back from now such as 30m, 12h, 7d, 2w"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@dataclass(frozen=True)
class Window:
    """Half-open ``[since, until)``; either end may be open."""

    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.until <= self.since:
            raise WindowError(f"window ends ({self.until}) before it starts ({self.since})")

    @classmethod
    def parse(cls, since: str | None, until: str | None, now: datetime | None = None) -> Window:
        now = now or datetime.now(UTC)
        return cls(parse_time(since, now) if since else None, parse_time(until, now) if until else None)

    @property
    def span(self) -> timedelta | None:
        if self.since and self.until:
            return self.until - self.since
        return None
