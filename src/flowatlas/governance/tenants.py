"""Tenants: who may ask, in which role, over which prefixes, within which quotas."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum

from flowatlas.addresses import AddressError, Prefix, parse_prefix
from flowatlas.governance.changes import Actor, ChangeLog
from flowatlas.governance.controlplane import ControlPlane

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Role(StrEnum):
    ADMIN = "admin"  # operator: everything, clear addresses
    ANALYST = "analyst"  # global scope, pseudonymised counterparts, must state a purpose
    ENTERPRISE = "enterprise"  # only flows with an endpoint inside its registered prefixes
    AUDITOR = "auditor"  # the audit log, never flows


class TenantError(ValueError):
    """Bad tenant input: unknown name, bad prefix, unknown quota."""


@dataclass(frozen=True)
class Quotas:
    """Per-tenant limits, all checked before the engine runs (0 disables a daily/rate limit)."""

    lookups_per_day: int = 1_000
    rows_per_day: int = 1_000_000
    rows_per_response: int = 10_000
    max_window_days: float = 31.0
    widest_prefix_v4: int = 24
    widest_prefix_v6: int = 48
    max_hops: int = 2
    requests_per_second: float = 20.0
    burst: int = 40

    @classmethod
    def for_role(cls, role: Role) -> Quotas:
        """Defaults by role: an operator may follow the longest planted relay chains."""
        return cls(max_hops=16) if role is Role.ADMIN else cls()

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def with_overrides(self, overrides: dict[str, float]) -> Quotas:
        unknown = sorted(set(overrides) - set(self.names()))
        if unknown:
            raise TenantError(f"unknown quota {unknown[0]!r}; known: {', '.join(self.names())}")
        typed: dict[str, float | int] = {}
        for f in fields(self):
            if f.name in overrides:
                value = overrides[f.name]
                if value < 0:
                    raise TenantError(f"quota {f.name} must not be negative")
                typed[f.name] = float(value) if f.type == "float" else int(value)
        return replace(self, **typed)  # type: ignore[arg-type]


def parse_quota_assignments(items: tuple[str, ...] | list[str]) -> dict[str, float]:
    """``rows_per_day=5000`` style assignments (the CLI's ``--quota``)."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise TenantError(f"quota {item!r} is not NAME=NUMBER") from None
    Quotas().with_overrides(out)
    return out


@dataclass(frozen=True)
class Tenant:
    name: str
    role: Role
    prefixes: tuple[Prefix, ...] = ()
    can_reveal: bool = False
    disabled: bool = False
    quota_overrides: dict[str, float] = field(default_factory=dict)
    pseudonym_key: bytes = b""
    created_at: float = 0.0

    @property
    def quotas(self) -> Quotas:
        return Quotas.for_role(self.role).with_overrides(self.quota_overrides)


class TenantRegistry:
    """Tenants in the control plane; every change is audited as made by ``actor``."""

    def __init__(self, control: ControlPlane, actor: Actor | None = None) -> None:
        self.control = control
        self.changes = ChangeLog(control, actor)

    def add(
        self,
        name: str,
        role: str,
        prefixes: tuple[str, ...] | list[str] = (),
        *,
        can_reveal: bool = False,
        quotas: dict[str, float] | None = None,
    ) -> Tenant:
        if not _NAME.match(name):
            raise TenantError(f"tenant name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
        try:
            r = Role(role)
        except ValueError:
            raise TenantError(f"role {role!r} is not one of {', '.join(Role)}") from None
        try:
            parsed = tuple(parse_prefix(p) for p in prefixes)
        except AddressError as exc:
            raise TenantError(str(exc)) from exc
        if r is Role.ENTERPRISE and not parsed:
            raise TenantError("an enterprise tenant needs at least one prefix (its scope)")
        if r is not Role.ENTERPRISE and parsed:
            raise TenantError("only enterprise tenants have prefixes")
        overrides = quotas or {}
        Quotas().with_overrides(overrides)
        with self.changes.change(
            "tenants.add", tenant=name, role=r.value, prefixes=[p.text for p in parsed],
            can_reveal=can_reveal, quotas=overrides,
        ) as change:
            con = change.con
            if con.execute("SELECT 1 FROM tenants WHERE name = ?", (name,)).fetchone():
                raise TenantError(f"tenant {name!r} exists already")
            con.execute(
                "INSERT INTO tenants VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
                (
                    name,
                    r.value,
                    json.dumps([p.text for p in parsed]),
                    int(can_reveal),
                    json.dumps(overrides),
                    os.urandom(32),
                    time.time(),
                ),
            )
        return self.get(name)

    def get(self, name: str) -> Tenant:
        row = self.control.db.execute(
            "SELECT name, role, prefixes, can_reveal, disabled, quotas, pseudonym_key, created_at "
            "FROM tenants WHERE name = ?",
            (name,),
        ).fetchone()
        if row is None:
            raise TenantError(f"no tenant {name!r}")
        return _tenant(row)

    def list(self) -> list[Tenant]:
        rows = self.control.db.execute(
            "SELECT name, role, prefixes, can_reveal, disabled, quotas, pseudonym_key, created_at "
            "FROM tenants ORDER BY name"
        ).fetchall()
        return [_tenant(r) for r in rows]

    def set_disabled(self, name: str, disabled: bool = True) -> None:
        route = "tenants.disable" if disabled else "tenants.enable"
        with self.changes.change(route, tenant=name) as change:
            cur = change.con.execute(
                "UPDATE tenants SET disabled = ? WHERE name = ?", (int(disabled), name)
            )
            if not cur.rowcount:
                raise TenantError(f"no tenant {name!r}")

    def set_quotas(self, name: str, overrides: dict[str, float]) -> Tenant:
        with self.changes.change("tenants.quota", tenant=name, quotas=overrides) as change:
            con = change.con
            row = con.execute("SELECT quotas FROM tenants WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise TenantError(f"no tenant {name!r}")
            merged = {**json.loads(row[0]), **overrides}
            Quotas().with_overrides(merged)
            con.execute("UPDATE tenants SET quotas = ? WHERE name = ?", (json.dumps(merged), name))
        return self.get(name)


def _tenant(row: tuple[object, ...]) -> Tenant:
    name, role, prefixes, can_reveal, disabled, quotas, key, created = row
    return Tenant(
        name=str(name),
        role=Role(str(role)),
        prefixes=tuple(parse_prefix(p) for p in json.loads(str(prefixes))),
        can_reveal=bool(can_reveal),
        disabled=bool(disabled),
        quota_overrides=dict(json.loads(str(quotas))),
        pseudonym_key=bytes(key),  # type: ignore[call-overload]
        created_at=float(created),  # type: ignore[arg-type]
    )
