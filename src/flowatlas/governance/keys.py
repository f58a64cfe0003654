"""API keys: random, shown once, stored only as SHA-256 hashes.

A key reads ``fa_<key id>_<secret>``. The id finds the row without scanning; the secret has 256
bits of entropy, so a fast hash is enough (no password-style stretching needed) and comparing
hashes in constant time leaks nothing useful.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from flowatlas.governance.changes import Actor, ChangeLog
from flowatlas.governance.controlplane import ControlPlane
from flowatlas.governance.tenants import Tenant, TenantError, TenantRegistry

PREFIX = "fa_"


class ApiKeyError(ValueError):
    """An unknown, malformed or revoked key (the message never echoes the secret)."""


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    tenant: str
    created_at: float
    revoked_at: float | None


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class KeyRing:
    """API keys; creating and revoking one is audited as made by ``actor``."""

    def __init__(self, control: ControlPlane, actor: Actor | None = None) -> None:
        self.control = control
        self.tenants = TenantRegistry(control, actor)
        self.changes = ChangeLog(control, actor)

    def create(self, tenant: str) -> tuple[str, str]:
        """A new key for ``tenant``: returns (key id, full key). The full key is never stored."""
        self.tenants.get(tenant)
        key_id = secrets.token_hex(6)
        full = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        with self.changes.change("keys.create", tenant=tenant, key=key_id) as change:
            change.con.execute(
                "INSERT INTO keys VALUES (?, ?, ?, ?, NULL)",
                (key_id, tenant, _hash(full), time.time()),
            )
        return key_id, full

    def revoke(self, key_id: str) -> None:
        with self.changes.change("keys.revoke", key=key_id) as change:
            cur = change.con.execute(
                "UPDATE keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (time.time(), key_id),
            )
            if not cur.rowcount:
                raise ApiKeyError(f"no active key {key_id!r}")

    def list(self, tenant: str | None = None) -> list[KeyInfo]:
        sql = "SELECT key_id, tenant, created_at, revoked_at FROM keys"
        rows = (
            self.control.db.execute(sql + " WHERE tenant = ? ORDER BY created_at", (tenant,))
            if tenant
            else self.control.db.execute(sql + " ORDER BY tenant, created_at")
        )
        return [
            KeyInfo(str(a), str(b), float(c), None if d is None else float(d))
            for a, b, c, d in rows.fetchall()
        ]

    def authenticate(self, full: str) -> tuple[Tenant, str]:
        """The tenant and key id a presented key belongs to; ApiKeyError if it opens nothing."""
        body = full[len(PREFIX) :] if full.startswith(PREFIX) else ""
        key_id, sep, _ = body.partition("_")
        if not sep or not key_id:
            raise ApiKeyError("malformed API key")
        row = self.control.db.execute(
            "SELECT tenant, secret_hash, revoked_at FROM keys WHERE key_id = ?", (key_id,)
        ).fetchone()
        # Hash even when the id is unknown so that timing does not reveal which ids exist.
        presented = _hash(full)
        if row is None or not hmac.compare_digest(presented, bytes(row[1])):
            raise ApiKeyError("unknown API key")
        if row[2] is not None:
            raise ApiKeyError("revoked API key")
        try:
            tenant = self.tenants.get(str(row[0]))
        except TenantError:
            raise ApiKeyError("API key of a deleted tenant") from None
        return tenant, key_id
