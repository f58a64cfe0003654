"""Control-plane changes audit themselves: who changed what, written with the change.

Every registry that changes the control plane (tenants, keys, prefix classes, sources,
opt-outs, settings) is given an :class:`Actor` and writes through a :class:`ChangeLog`, so the
audit entry is appended in the same SQLite transaction as the change: there is no change without
its entry, whichever front end (CLI, API, a future console or job) made it.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from flowatlas.governance.audit import AuditLog
from flowatlas.governance.controlplane import ControlPlane


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return f"uid{os.getuid()}"


@dataclass(frozen=True)
class Actor:
    """Who makes a change, as the audit log names it (``actor``, plus tenant and key if any)."""

    name: str
    tenant: str | None = None
    key_id: str | None = None

    @classmethod
    def cli(cls) -> Actor:
        """An operator at the command line: ``cli:<login name>``."""
        return cls(f"cli:{_user()}")

    @classmethod
    def local(cls) -> Actor:
        """Python code using the registries directly: ``local:<login name>``."""
        return cls(f"local:{_user()}")

    @classmethod
    def key(cls, tenant: str, key_id: str) -> Actor:
        """A tenant's API key (an admin changing the control plane over HTTP)."""
        return cls(f"key:{key_id}", tenant, key_id)


@dataclass
class Change:
    """One change in progress: the transaction, and what its audit entry will say."""

    con: sqlite3.Connection
    params: dict[str, Any] = field(default_factory=dict)
    rows: int = 0
    outcome: str = "ok"


class ChangeLog:
    def __init__(self, control: ControlPlane, actor: Actor | None = None,
                 clock: Callable[[], float] = time.time, audit: AuditLog | None = None) -> None:
        self.control = control
        self.actor = actor or Actor.local()
        self.audit = audit or AuditLog(control, clock)

    @contextlib.contextmanager
    def change(self, route: str, **params: Any) -> Iterator[Change]:
        """Make a change inside the block (``c.con``); on success the entry is appended in the
        same transaction. An exception rolls both back."""
        with self.control.write() as con:
            c = Change(con, dict(params))
            yield c
            self._append(con, route, c.params, c.rows, c.outcome)

    def record(self, route: str, rows: int = 0, outcome: str = "ok", **params: Any) -> None:
        """Audit a change that cannot sit in one transaction (an opt-out's purge of stored
        flows runs for minutes and must not hold the control plane's write lock)."""
        with self.control.write() as con:
            self._append(con, route, params, rows, outcome)

    def _append(self, con: sqlite3.Connection, route: str, params: dict[str, Any], rows: int,
                outcome: str) -> None:
        self.audit.append_in(
            con, tenant=self.actor.tenant, key_id=self.actor.key_id, actor=self.actor.name,
            route=route, params=params, purpose=None, rows=rows, outcome=outcome,
        )
