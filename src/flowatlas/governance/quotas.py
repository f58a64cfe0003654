"""Quotas: static limits per request, a token bucket per tenant, and daily counters.

Everything is decided before the engine runs. Rows are reserved up front (the request's limit)
and the unused part refunded afterwards, so concurrent requests can never spend more than the
day allows: the reservation is one ``BEGIN IMMEDIATE`` transaction, serialised by SQLite across
threads and processes.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flowatlas.addresses import Prefix, is_ipv4
from flowatlas.governance.controlplane import ControlPlane
from flowatlas.governance.tenants import Quotas, Tenant

Clock = Callable[[], float]


class QuotaExceeded(Exception):
    """A quota that would be exceeded: its name, why, and when trying again can help."""

    def __init__(self, quota: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.quota = quota
        self.message = message
        self.retry_after = retry_after


class LimitExceeded(Exception):
    """A request shaped beyond a per-request limit: waiting never helps, narrowing does."""

    def __init__(self, quota: str, message: str) -> None:
        super().__init__(message)
        self.quota = quota
        self.message = message


@dataclass(frozen=True)
class Demand:
    """What one request would consume and how wide it reaches."""

    lookups: tuple[str, ...] = ()
    rows: int = 0
    window_seconds: float | None = None
    prefixes: tuple[Prefix, ...] = field(default=())
    hops: int = 0


@dataclass(frozen=True)
class Usage:
    day: str
    quotas: Quotas
    lookups: int
    rows: int
    tokens: float
    seconds_to_reset: int

    def remaining(self) -> dict[str, float | int | None]:
        q = self.quotas
        return {
            "lookups_per_day": None
            if not q.lookups_per_day
            else max(0, q.lookups_per_day - self.lookups),
            "rows_per_day": None if not q.rows_per_day else max(0, q.rows_per_day - self.rows),
            "requests_now": None if not q.requests_per_second else math.floor(self.tokens),
        }

    def headers(self) -> dict[str, str]:
        out = {"X-Quota-Reset": str(self.seconds_to_reset)}
        for name, value in self.remaining().items():
            if value is not None:
                out[f"X-Quota-Remaining-{name.replace('_', '-').title()}"] = str(value)
        return out


def _day(now: float) -> tuple[str, int]:
    t = datetime.fromtimestamp(now, UTC)
    midnight = datetime(t.year, t.month, t.day, tzinfo=UTC) + timedelta(days=1)
    return t.date().isoformat(), max(1, math.ceil((midnight - t).total_seconds()))


def prefix_width_ok(prefix: Prefix, q: Quotas) -> bool:
    widest = q.widest_prefix_v4 if is_ipv4(prefix.low) else q.widest_prefix_v6
    return prefix.prefix_length >= widest


class QuotaLedger:
    def __init__(self, control: ControlPlane, clock: Clock) -> None:
        self.control = control
        self.clock = clock

    def check_static(self, tenant: Tenant, demand: Demand) -> None:
        """Limits on the shape of one request (LimitExceeded): they never reset by waiting, so
        the request must be narrowed."""
        q = tenant.quotas
        if q.rows_per_response and demand.rows > q.rows_per_response:
            raise LimitExceeded(
                "rows_per_response",
                f"asks for up to {demand.rows} rows; this "
                f"tenant may receive {q.rows_per_response} per response",
            )
        max_window = q.max_window_days * 86_400
        if q.max_window_days and (
            demand.window_seconds is None or demand.window_seconds > max_window + 1
        ):
            raise LimitExceeded(
                "max_window_days",
                "time window is wider than this tenant's "
                f"{q.max_window_days:g} days; narrow the window (since, until)",
            )
        for p in demand.prefixes:
            if not prefix_width_ok(p, q):
                raise LimitExceeded(
                    "widest_prefix",
                    f"prefix {p.text} is wider than this tenant "
                    f"may look up (/{q.widest_prefix_v4} IPv4, "
                    f"/{q.widest_prefix_v6} IPv6)",
                )
        if demand.hops > q.max_hops:
            raise LimitExceeded(
                "max_hops",
                f"{demand.hops} hops asked; this tenant may go {q.max_hops} hops",
            )

    def spend(self, tenant: Tenant, demand: Demand) -> Usage:
        """Charge the bucket, record lookups and reserve rows atomically, or raise QuotaExceeded.

        A request refused by a daily quota still costs its token: hammering is what the bucket
        is for.
        """
        q = tenant.quotas
        now = self.clock()
        day, reset = _day(now)
        denied: QuotaExceeded | None = None
        with self.control.write() as con:
            tokens = self._tokens(con, tenant, now)
            if q.requests_per_second:
                if tokens < 1.0:
                    wait = math.ceil((1.0 - tokens) / q.requests_per_second)
                    denied = QuotaExceeded(
                        "requests_per_second",
                        f"too many requests: {q.requests_per_second:g}/s, bursts of {q.burst}",
                        wait,
                    )
                else:
                    tokens -= 1.0
                con.execute(
                    "INSERT OR REPLACE INTO buckets VALUES (?, ?, ?)", (tenant.name, tokens, now)
                )
            lookups = self._lookups(con, tenant.name, day)
            rows = self._rows(con, tenant.name, day)
            if denied is None:
                fresh = [
                    t
                    for t in dict.fromkeys(demand.lookups)
                    if not con.execute(
                        "SELECT 1 FROM usage_lookups WHERE tenant = ? AND day = ? AND target = ?",
                        (tenant.name, day, t),
                    ).fetchone()
                ]
                if q.lookups_per_day and lookups + len(fresh) > q.lookups_per_day:
                    denied = QuotaExceeded(
                        "lookups_per_day",
                        f"{len(fresh)} new lookups would "
                        f"pass today's {q.lookups_per_day} distinct addresses "
                        f"or prefixes ({lookups} used)",
                        reset,
                    )
                elif q.rows_per_day and rows + demand.rows > q.rows_per_day:
                    denied = QuotaExceeded(
                        "rows_per_day",
                        f"up to {demand.rows} rows would pass "
                        f"today's {q.rows_per_day} ({rows} used)",
                        reset,
                    )
                else:
                    con.executemany(
                        "INSERT INTO usage_lookups VALUES (?, ?, ?)",
                        [(tenant.name, day, t) for t in fresh],
                    )
                    self._add_rows(con, tenant.name, day, demand.rows)
                    lookups += len(fresh)
                    rows += demand.rows
        if denied is not None:
            raise denied
        return Usage(day, q, lookups, rows, tokens, reset)

    def refund_in(self, con: sqlite3.Connection, tenant: Tenant, day: str, rows: int) -> None:
        """Give back reserved rows a response did not use (inside the caller's transaction)."""
        if rows > 0:
            self._add_rows(con, tenant.name, day, -rows)

    def usage(self, tenant: Tenant) -> Usage:
        q = tenant.quotas
        now = self.clock()
        day, reset = _day(now)
        con = self.control.db
        tokens = self._tokens(con, tenant, now)
        return Usage(
            day,
            q,
            self._lookups(con, tenant.name, day),
            self._rows(con, tenant.name, day),
            tokens,
            reset,
        )

    @staticmethod
    def _tokens(con: sqlite3.Connection, tenant: Tenant, now: float) -> float:
        """The tenant's request bucket as of ``now``: refilled since its last update, capped at
        the burst (full when it has never been used)."""
        q = tenant.quotas
        row = con.execute(
            "SELECT tokens, updated FROM buckets WHERE tenant = ?", (tenant.name,)
        ).fetchone()
        if row is None:
            return float(q.burst)
        refilled = float(row[0]) + q.requests_per_second * max(0.0, now - float(row[1]))
        return min(float(q.burst), refilled)

    @staticmethod
    def _lookups(con: sqlite3.Connection, tenant: str, day: str) -> int:
        return int(
            con.execute(
                "SELECT count(*) FROM usage_lookups WHERE tenant = ? AND day = ?", (tenant, day)
            ).fetchone()[0]
        )

    @staticmethod
    def _rows(con: sqlite3.Connection, tenant: str, day: str) -> int:
        row = con.execute(
            "SELECT amount FROM usage_daily WHERE tenant = ? AND day = ? AND kind = 'rows'",
            (tenant, day),
        ).fetchone()
        return 0 if row is None else int(row[0])

    @staticmethod
    def _add_rows(con: sqlite3.Connection, tenant: str, day: str, rows: int) -> None:
        con.execute(
            "INSERT INTO usage_daily VALUES (?, ?, 'rows', ?) ON CONFLICT(tenant, day, kind) "
            "DO UPDATE SET amount = max(0, amount + excluded.amount)",
            (tenant, day, rows),
        )
