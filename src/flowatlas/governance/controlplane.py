"""The control plane's SQLite file: tenants, keys, quota usage, opt-outs, prefix classes,
exporter sources, audit.

One module owns the file (``<store>/control.sqlite``) and its migrations; every other governance
module borrows a connection from here. The schema version is SQLite's ``user_version``; the
steps in ``MIGRATIONS`` run in order, each in the same transaction as the version bump, so an
interrupted upgrade leaves the previous version intact. Connections are per thread (the HTTP
server answers from a thread pool) and every write that must not interleave runs inside
``BEGIN IMMEDIATE``, which takes SQLite's write lock up front, so check-and-spend stays atomic
across threads and processes.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

FILENAME = "control.sqlite"
LEGACY_SOURCES = "sources.sqlite"
"""The exporter registry's own file before it was folded into the control plane."""

SOURCES_TABLE = """
CREATE TABLE IF NOT EXISTS sources (
    prefix TEXT PRIMARY KEY,
    low BLOB NOT NULL,
    high BLOB NOT NULL,
    source_id INTEGER NOT NULL,
    partner TEXT NOT NULL,
    sampling INTEGER,
    basis TEXT NOT NULL,
    added_at REAL NOT NULL
)
"""


def _fold_sources(con: sqlite3.Connection, control: ControlPlane) -> list[Callable[[], None]]:
    """Version 2: the exporter registry moves in; a ``sources.sqlite`` beside the file is
    imported, and renamed to ``sources.sqlite.migrated`` once the upgrade has committed."""
    con.execute(SOURCES_TABLE)
    db_path = control.path
    legacy = db_path.parent / LEGACY_SOURCES
    if not legacy.exists():
        return []
    old = sqlite3.connect(legacy, timeout=30.0)
    try:
        has_table = old.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sources'"
        ).fetchone()
        rows = old.execute(
            "SELECT prefix, low, high, source_id, partner, sampling, basis, added_at FROM sources"
        ).fetchall() if has_table else []
    except sqlite3.Error as exc:
        raise ControlPlaneError(f"cannot import {legacy} into {db_path}: {exc}") from exc
    finally:
        old.close()
    con.executemany("INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    from flowatlas.governance.audit import AuditLog  # audit.py imports this module

    AuditLog(control, time.time).append_in(
        con, tenant=None, key_id=None, actor="migration", route="sources.migrate",
        params={"from": str(legacy), "sources": len(rows)}, purpose=None, rows=len(rows),
        outcome="ok",
    )

    def retire() -> None:
        for suffix in ("", "-wal", "-shm"):
            path = legacy.with_name(legacy.name + suffix)
            if path.exists():
                os.replace(path, legacy.with_name(legacy.name + ".migrated" + suffix))

    return [retire]


Migration = str | Callable[[sqlite3.Connection, "ControlPlane"], list[Callable[[], None]]]
"""SQL statements, or a function of (connection, control plane) that returns what to do once
the upgrade has committed."""

# Append-only: migration i brings the schema from version i to i + 1.
MIGRATIONS: tuple[Migration, ...] = (
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
    _fold_sources,
)


def _expected_tables() -> set[str]:
    """Tables the SQL migrations leave, read from their own text (created and not dropped;
    those of function migrations are theirs to check)."""
    text = "\n".join(m for m in MIGRATIONS if isinstance(m, str))
    created = re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", text, re.IGNORECASE)
    dropped = re.findall(r"DROP TABLE (?:IF EXISTS )?(\w+)", text, re.IGNORECASE)
    return set(created) - set(dropped)


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
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:  # junk file, read-only store, dropped table...
            self.close()
            raise ControlPlaneError(f"cannot use the control database {self.path}: {exc}") from exc

    @classmethod
    def for_store(cls, store_root: str | os.PathLike[str], *, create: bool = True) -> ControlPlane:
        """The store's control plane. With ``create=False`` (commands that must not make a
        store appear: `tenants list`, `audit verify` on a mistyped path), a path that is not
        a flowatlas store and has no control database yet is an error naming it."""
        root = Path(store_root)
        if not create and not (root / "store.json").exists() and not (root / FILENAME).exists():
            raise ControlPlaneError(f"no flowatlas store at {root} (missing store.json)")
        return cls(root / FILENAME)

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

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        after: list[Callable[[], None]] = []
        with self.write() as con:
            version = int(con.execute("PRAGMA user_version").fetchone()[0])
            if version > len(MIGRATIONS):
                raise ControlPlaneError(
                    f"{self.path} has schema version {version}; this flowatlas knows "
                    f"{len(MIGRATIONS)}: upgrade flowatlas"
                )
            for i in range(version, len(MIGRATIONS)):
                step = MIGRATIONS[i]
                if isinstance(step, str):
                    for statement in step.split(";"):
                        if statement.strip():
                            con.execute(statement)
                else:
                    after += step(con, self)
                con.execute(f"PRAGMA user_version = {i + 1}")
            present = {row[0] for row in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = sorted(_expected_tables() - present)
            if missing:  # a hand-edited or damaged file: say so rather than fail mid-command
                raise ControlPlaneError(f"{self.path} is damaged: table(s) "
                                        f"{', '.join(missing)} missing")
        for action in after:
            action()

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
