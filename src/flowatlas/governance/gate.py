"""The single entry to the data: authenticate, authorise, check quotas, scope, pseudonymise, audit.

Every HTTP route goes ``admit`` -> (Atlas call on ``ticket.selection``) -> ``disclose`` per result
table -> ``close``. ``admit`` decides everything before the engine runs; ``close`` refunds the
unused row reservation and appends the audit entry in the same transaction. Refusals are audited
too, so the log holds every request, not only the answered ones.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowatlas.addresses import AddressError, Prefix
from flowatlas.governance.audit import AuditLog
from flowatlas.governance.classes import PSEUDONYMISED, PrefixClasses
from flowatlas.governance.controlplane import ControlPlane
from flowatlas.governance.keys import ApiKeyError, KeyRing
from flowatlas.governance.pseudonym import CryptoPAn, pseudonymise_table
from flowatlas.governance.pseudospace import PseudonymSpace, PseudonymTermError
from flowatlas.governance.quotas import (
    Demand,
    LimitExceeded,
    QuotaExceeded,
    QuotaLedger,
    Usage,
)
from flowatlas.governance.scope import ScopeError, address_terms, outside_scope, scope_for
from flowatlas.governance.tenants import Role, Tenant
from flowatlas.query.expr import ALL, Expr
from flowatlas.query.filter import FilterSyntaxError, parse_filter
from flowatlas.query.model import Selection
from flowatlas.query.window import Window, WindowError, parse_time
from flowatlas.ranges import NetClassTable, in_classes

FLOW_ROLES = frozenset({Role.ADMIN, Role.ANALYST, Role.ENTERPRISE})
AUDIT_ROLES = frozenset({Role.ADMIN, Role.AUDITOR})
ANY_ROLE = frozenset(Role)
PSEUDONYMISED_ROLES = frozenset({Role.ANALYST, Role.ENTERPRISE})
MAX_PURPOSE = 200
_CLASS_TTL = 2.0


class GateError(Exception):
    """A refusal: HTTP status, a stable machine code, a message for people, extra headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        quota: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.quota = quota


@dataclass
class Ticket:
    """One admitted request: who, what, the scoped selection, and what it has disclosed so far."""

    tenant: Tenant
    key_id: str
    route: str
    params: dict[str, Any]
    purpose: str | None
    selection: Selection
    usage: Usage
    reserved: int
    exempt: tuple[Prefix, ...]
    targets: tuple[Prefix, ...] = ()
    """The asked targets as the engine must read them (pseudonyms translated)."""
    shown: dict[str, str] = field(default_factory=dict)
    """Clear text of a translated target -> the text the tenant asked with."""
    rows: int = 0
    pseudonymised: int = 0
    withheld: int = 0
    sources: Counter[int] = field(default_factory=Counter)
    closed: bool = False

    def headers(self) -> dict[str, str]:
        return self.usage.headers()

    def scrub(self, message: str) -> str:
        """A message about the engine's work, with translated targets named as the tenant named
        them (an error must not echo the clear address behind a pseudonym)."""
        for clear, asked in sorted(self.shown.items(), key=lambda kv: -len(kv[0])):
            message = message.replace(clear, asked)
        return message


class Gate:
    def __init__(self, control: ControlPlane, clock: Callable[[], float] = time.time) -> None:
        self.control = control
        self.clock = clock
        self.keys = KeyRing(control)
        self.ledger = QuotaLedger(control, clock)
        self.audit = AuditLog(control, clock)
        self.classes = PrefixClasses(control)
        self._pans: dict[tuple[str, bytes], CryptoPAn] = {}
        self._lock = threading.Lock()
        self._class_cache: tuple[float, NetClassTable] = (-1e18, NetClassTable.empty())

    # -- admission --------------------------------------------------------------------------

    def authenticate(
        self, credential: str | None, route: str, params: dict[str, Any]
    ) -> tuple[Tenant, str]:
        if not credential:
            self._refuse(None, None, route, params, None, "unauthenticated")
            raise GateError(
                401,
                "unauthenticated",
                "send an API key: 'Authorization: Bearer fa_...' or 'X-API-Key: fa_...'",
                {"WWW-Authenticate": "Bearer"},
            )
        try:
            tenant, key_id = self.keys.authenticate(credential)
        except ApiKeyError as exc:
            self._refuse(None, None, route, params, None, "unauthenticated")
            raise GateError(
                401, "unauthenticated", str(exc), {"WWW-Authenticate": "Bearer"}
            ) from None
        if tenant.disabled:
            self._refuse(tenant, key_id, route, params, None, "denied:tenant-disabled")
            raise GateError(403, "tenant_disabled", f"tenant {tenant.name} is disabled")
        return tenant, key_id

    def admit(
        self,
        credential: str | None,
        route: str,
        params: dict[str, Any],
        *,
        roles: frozenset[Role] = FLOW_ROLES,
        purpose: str | None = None,
        filter: str | None = None,
        since: str | None = None,
        until: str | None = None,
        rows: int | Callable[[Window], int] = 0,
        targets: tuple[Prefix, ...] = (),
        hops: int = 0,
        reveal: bool = False,
    ) -> Ticket:
        """Everything decided before the engine runs; raises GateError (audited) on refusal."""
        tenant, key_id = self.authenticate(credential, route, params)
        purpose = (purpose or "").strip() or None

        def refuse(status: int, code: str, message: str, outcome: str | None = None) -> GateError:
            self._refuse(tenant, key_id, route, params, purpose, outcome or f"denied:{code}")
            return GateError(status, code, message)

        if tenant.role not in roles:
            raise refuse(
                403,
                "forbidden",
                f"role {tenant.role.value} may not use {route} "
                f"(allowed: {', '.join(sorted(r.value for r in roles))})",
            )
        if reveal and not tenant.can_reveal:
            raise refuse(
                403, "forbidden", f"tenant {tenant.name} has no right to reveal pseudonyms"
            )
        if purpose and len(purpose) > MAX_PURPOSE:
            raise refuse(400, "bad_purpose", f"purpose is longer than {MAX_PURPOSE} characters")
        flows = roles <= FLOW_ROLES
        if flows and tenant.role is Role.ANALYST and not purpose:
            raise refuse(
                400,
                "purpose_required",
                "analyst requests need a purpose or case "
                "reference: the 'purpose' parameter or an 'X-Purpose' header",
            )
        try:
            expr: Expr = parse_filter(filter) if filter else ALL
        except FilterSyntaxError as exc:
            raise refuse(400, "bad_filter", f"filter: {exc}", "error:bad_filter") from None
        q = tenant.quotas
        try:
            window = self._window(since, until, q.max_window_days if flows else 0)
        except WindowError as exc:
            raise refuse(400, "bad_window", str(exc), "error:bad_window") from None
        try:
            scope = scope_for(tenant) if flows else ALL
        except ScopeError as exc:
            raise refuse(403, "forbidden", str(exc)) from None
        named = (*targets, *address_terms(expr))
        engine_expr, engine_targets = expr, targets
        space = None if reveal else self.space(tenant)
        if space is not None:
            # Addresses named by a pseudonymised tenant mean what it sees (pseudonyms inside
            # pseudonymised space); clear terms there are refused: they could only test guesses.
            try:
                engine_expr = space.rewrite(expr)
                engine_targets = tuple(space.target(t) for t in targets)
            except PseudonymTermError as exc:
                raise refuse(403, "pseudonymised_space", str(exc)) from None
        if callable(rows):
            rows = rows(window)
        demand = Demand(
            lookups=tuple(dict.fromkeys(p.text for p in named)),
            rows=rows,
            window_seconds=window.span.total_seconds() if window.span else None,
            prefixes=named,
            hops=hops,
        )
        try:
            if flows:
                self.ledger.check_static(tenant, demand)
            elif q.rows_per_response and rows > q.rows_per_response:
                self.ledger.check_static(tenant, Demand(rows=rows, window_seconds=0.0))
            usage = self.ledger.spend(tenant, demand)
        except LimitExceeded as exc:
            # Can never succeed as asked: 403 naming the limit, no Retry-After (issue 14.4).
            self._refuse(tenant, key_id, route, params, purpose, f"limit:{exc.quota}")
            raise GateError(
                403,
                "limit_exceeded",
                f"limit {exc.quota}: {exc.message}",
                {"X-Limit-Exceeded": exc.quota},
                quota=exc.quota,
            ) from None
        except QuotaExceeded as exc:
            self._refuse(tenant, key_id, route, params, purpose, f"quota:{exc.quota}")
            headers = {
                "Retry-After": str(exc.retry_after),
                "X-Quota-Exceeded": exc.quota,
                **self.ledger.usage(tenant).headers(),
            }
            raise GateError(
                429,
                "quota_exceeded",
                f"quota {exc.quota} exceeded: {exc.message}",
                headers,
                quota=exc.quota,
            ) from None
        shown = {e.text: t.text for t, e in zip(targets, engine_targets, strict=True) if e != t}
        return Ticket(
            tenant,
            key_id,
            route,
            params,
            purpose,
            Selection(engine_expr, window, scope),
            usage,
            rows,
            tenant.prefixes,
            engine_targets,
            shown,
        )

    def reject(
        self,
        credential: str | None,
        route: str,
        params: dict[str, Any],
        status: int,
        code: str,
        message: str,
    ) -> GateError:
        """Input refused before admission (bad address, bad parameter): audited all the same."""
        tenant, key_id = self.authenticate(credential, route, params)
        self._refuse(tenant, key_id, route, params, None, f"error:{code}")
        return GateError(status, code, message)

    def _window(self, since: str | None, until: str | None, max_days: float) -> Window:
        now = datetime.fromtimestamp(self.clock(), UTC)
        end = parse_time(until, now) if until else now
        start = parse_time(since, now) if since else None
        if start is None and max_days:
            start = end - timedelta(days=max_days)
        return Window(start, end)

    # -- disclosure -------------------------------------------------------------------------

    def disclose(
        self,
        ticket: Ticket,
        table: pa.Table,
        text_columns: tuple[str, ...] = (),
        endpoints: tuple[str, str] = ("src_addr", "dst_addr"),
    ) -> pa.Table:
        """Count, scope-check and pseudonymise one result table before it leaves.

        ``endpoints`` names the two address columns of which one must be in scope on each row
        (rows that describe flows: flows themselves, edges, pairs).
        """
        stray = outside_scope(ticket.tenant, table, endpoints)
        if stray.any():
            # Never expected (the engine applies the scope); withheld and audited if it happens.
            ticket.withheld += int(stray.sum())
            table = table.filter(pa.array(~stray))
        if ticket.tenant.role in PSEUDONYMISED_ROLES:
            table, n = pseudonymise_table(
                table, self._pan(ticket.tenant), self.class_table(), ticket.exempt, text_columns
            )
            ticket.pseudonymised += n
        ticket.rows += table.num_rows
        if "source_id" in table.column_names and table.num_rows:
            counts = pc.value_counts(table.column("source_id")).to_pylist()
            ticket.sources.update({int(c["values"]): int(c["counts"]) for c in counts})
        return table

    def disclose_all(self, ticket: Ticket, tables: Iterable[pa.Table]) -> list[pa.Table]:
        return [self.disclose(ticket, t) for t in tables]

    def reveal(self, ticket: Ticket, pseudonym: str) -> str | None:
        """The address behind one of this tenant's pseudonyms, or None if it is not one."""
        try:
            address = self._pan(ticket.tenant).decrypt(pseudonym)
        except AddressError:
            return None
        from flowatlas.addresses import pack

        raw = np.frombuffer(pack(address), dtype=np.uint8)[None, :]
        if not in_classes(raw, self.class_table(), PSEUDONYMISED)[0]:
            return None
        ticket.rows += 1
        return address

    def close(self, ticket: Ticket, outcome: str = "ok") -> None:
        """Refund unused rows and audit the request, atomically."""
        if ticket.closed:
            return
        ticket.closed = True
        unused = max(0, ticket.reserved - ticket.rows)
        extra: dict[str, Any] = {}
        if ticket.sources:
            extra["sources"] = {str(k): v for k, v in sorted(ticket.sources.items())}
        if ticket.pseudonymised:
            extra["pseudonymised"] = ticket.pseudonymised
        if ticket.withheld:
            extra["withheld_out_of_scope"] = ticket.withheld
        with self.control.write() as con:
            if unused:
                self.ledger.refund_in(con, ticket.tenant, ticket.usage.day, unused)
            self.audit.append_in(
                con,
                tenant=ticket.tenant.name,
                key_id=ticket.key_id,
                route=ticket.route,
                params=ticket.params,
                purpose=ticket.purpose,
                rows=ticket.rows,
                outcome=outcome,
                **extra,
            )

    def _refuse(
        self,
        tenant: Tenant | None,
        key_id: str | None,
        route: str,
        params: dict[str, Any],
        purpose: str | None,
        outcome: str,
    ) -> None:
        self.audit.append(
            tenant=tenant.name if tenant else None,
            key_id=key_id,
            route=route,
            params=params,
            purpose=purpose,
            rows=0,
            outcome=outcome,
        )

    # -- caches -----------------------------------------------------------------------------

    def _pan(self, tenant: Tenant) -> CryptoPAn:
        k = (tenant.name, tenant.pseudonym_key)
        with self._lock:
            pan = self._pans.get(k)
            if pan is None:
                pan = self._pans[k] = CryptoPAn(tenant.pseudonym_key)
            return pan

    def space(self, tenant: Tenant) -> PseudonymSpace | None:
        """Where this tenant sees pseudonyms (None: it sees every address as it is)."""
        if tenant.role not in PSEUDONYMISED_ROLES:
            return None
        return PseudonymSpace.of(self.class_table(), self._pan(tenant), tenant.prefixes)

    def class_table(self) -> NetClassTable:
        """The operator's prefix classes (re-read every few seconds): pseudonymisation and the
        investigations' network classes both use it."""
        loaded, classes = self._class_cache
        now = time.monotonic()
        if now - loaded > _CLASS_TTL:
            classes = self.classes.table()
            self._class_cache = (now, classes)
        return classes
