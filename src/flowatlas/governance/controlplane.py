"""The control plane's SQLite file: tenants, keys, quota usage, opt-outs, prefix classes, audit.

One module owns the file (``<store>/control.sqlite``) and its migrations; every other governance
module borrows a connection from here. Connections are per thread (the HTTP server answers from
a thread pool) and every write that must not interleave runs inside ``BEGIN IMMEDIATE``, which
takes SQLite's write lock up front, so check-and-spend stays atomic across threads and processes.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

FILENAME = "control.sqlite"

# Append-only: migration i brings the schema from version i to i + 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE tenants (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        prefixes TEXT NOT NULL,          -- JSON list of CIDR texts (enterprise scope)
        can_reveal INTEGER NOT NULL,
        disabled INTEGER NOT NULL,
        quotas TEXT NOT NULL,            -- JSON overrides of the default quotas
        pseudonym_key BLOB NOT NULL,     -- 32 bytes of Crypto-PAn key, one per tenant
        created_at REAL NOT NULL
    );
    CREATE TABLE keys (
        key_id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES tenants(name),
        secret_hash BLOB NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE usage_daily (
        tenant TEXT NOT NULL,
        day TEXT NOT NULL,
        kind TEXT NOT NULL,
        amount INTEGER NOT NULL,
        PRIMARY KEY (tenant, day, kind)
    );
    CREATE TABLE usage_lookups (
        tenant TEXT NOT NULL,
        day TEXT NOT NULL,
        target TEXT NOT NULL,
        PRIMARY KEY (tenant, day, target)
    );
    CREATE TABLE buckets (
        tenant TEXT PRIMARY KEY,
        tokens REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE optouts (
        kind TEXT NOT NULL,              -- 'prefix' or 'asn'
        value TEXT NOT NULL,
        reason TEXT NOT NULL,
        added_at REAL NOT NULL,
        PRIMARY KEY (kind, value)
    );
    CREATE TABLE prefix_classes (
        prefix TEXT PRIMARY KEY,
        class TEXT NOT NULL
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        entry TEXT NOT NULL,             -- canonical JSON, exactly the bytes hashed
        hash BLOB NOT NULL
    );
    CREATE TABLE settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
)


class ControlPlaneError(RuntimeError):
    """The control-plane database is missing, newer than this code, or unreadable."""


class ControlPlane:
    """Owns ``control.sqlite``: opens it, migrates it, lends per-thread connections."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._migrate()

    @classmethod
    def for_store(cls, store_root: str | os.PathLike[str]) -> ControlPlane:
        return cls(Path(store_root) / FILENAME)

    @property
    def db(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            con.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a crash may lose the last commits' durability, never consistency.
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA foreign_keys=ON")
            self._local.con = con
            with self._lock:
                self._all.append(con)
        return con

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One atomic read-modify-write: the write lock is taken before the first read."""
        con = self.db
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def _migrate(self) -> None:
        with self.write() as con:
            version = int(con.execute("PRAGMA user_version").fetchone()[0])
            if version > len(MIGRATIONS):
                raise ControlPlaneError(
                    f"{self.path} has schema version {version}; this flowatlas knows "
                    f"{len(MIGRATIONS)}: upgrade flowatlas"
                )
            for i in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[i].split(";"):
                    if statement.strip():
                        con.execute(statement)
                con.execute(f"PRAGMA user_version = {i + 1}")

    def setting(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        with self._lock:
            for con in self._all:
                with contextlib.suppress(sqlite3.Error):
                    con.close()
            self._all.clear()
        self._local = threading.local()
