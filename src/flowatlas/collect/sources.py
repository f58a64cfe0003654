"""The exporter registry: which addresses may send flows, and as which source.

Kept in SQLite (``<store>/sources.sqlite``, table ``sources``) so that the CLI, the collector and
the service share it; the collector notices changes made by other processes within a second.
Lookups take the longest matching prefix and are cached per exporter address.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from flowatlas.addresses import AddressError, parse_prefix

FILENAME = "sources.sqlite"
BASES = ("contract", "consent", "public-interest", "research", "internal", "other")

_SCHEMA = """
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


class SourceError(ValueError):
    pass


@dataclass(frozen=True)
class Source:
    prefix: str
    source_id: int
    partner: str
    sampling: int | None
    """Overrides whatever rate the exporter announces (None: trust the exporter)."""
    basis: str
    added_at: float
    low: bytes = b""
    high: bytes = b""

    @property
    def width(self) -> int:
        return int.from_bytes(self.high, "big") - int.from_bytes(self.low, "big")


class SourceRegistry:
    def __init__(self, path: str | Path, *, refresh_seconds: float = 1.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self.refresh_seconds = refresh_seconds
        self._version = -1
        self._checked = 0.0
        self._sources: list[Source] = []
        self._cache: dict[bytes, Source | None] = {}
        self._reload()

    @classmethod
    def for_store(cls, store: str | Path) -> SourceRegistry:
        return cls(Path(store) / FILENAME)

    def close(self) -> None:
        self._db.close()

    def add(self, prefix: str, source_id: int, partner: str, *, sampling: int | None = None,
            basis: str = "contract") -> Source:
        try:
            p = parse_prefix(prefix)
        except AddressError as exc:
            raise SourceError(str(exc)) from exc
        if not 0 <= source_id < 1 << 32:
            raise SourceError(f"source id {source_id} is not a 32-bit unsigned number")
        if sampling is not None and not 1 <= sampling < 1 << 32:
            raise SourceError(f"sampling rate {sampling} must be between 1 and 2^32-1")
        if basis not in BASES:
            raise SourceError(f"basis {basis!r} is not one of {', '.join(BASES)}")
        if not partner.strip():
            raise SourceError("partner name is empty")
        now = time.time()
        self._db.execute(
            "INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (p.text, p.low, p.high, source_id, partner.strip(), sampling, basis, now),
        )
        self._reload()
        return Source(p.text, source_id, partner.strip(), sampling, basis, now, p.low, p.high)

    def remove(self, prefix_or_id: str) -> int:
        """Remove by prefix text or by source id; returns how many entries went."""
        if prefix_or_id.isdigit():
            cur = self._db.execute("DELETE FROM sources WHERE source_id = ?", (int(prefix_or_id),))
        else:
            try:
                text = parse_prefix(prefix_or_id).text
            except AddressError as exc:
                raise SourceError(str(exc)) from exc
            cur = self._db.execute("DELETE FROM sources WHERE prefix = ?", (text,))
        self._reload()
        return cur.rowcount

    def list(self) -> list[Source]:
        self._maybe_reload()
        return list(self._sources)

    def lookup(self, exporter: bytes) -> Source | None:
        """The most specific registered prefix containing the 16-byte ``exporter``."""
        self._maybe_reload()
        if exporter in self._cache:
            return self._cache[exporter]
        hits = [s for s in self._sources if s.low <= exporter <= s.high]
        best = min(hits, key=lambda s: s.width) if hits else None
        if len(self._cache) < 100_000:
            self._cache[exporter] = best
        return best

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.refresh_seconds:
            return
        self._checked = now
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._version:
            self._reload()

    def _reload(self) -> None:
        self._version = self._db.execute("PRAGMA data_version").fetchone()[0]
        rows = self._db.execute(
            "SELECT prefix, source_id, partner, sampling, basis, added_at, low, high FROM sources"
            " ORDER BY prefix"
        ).fetchall()
        self._sources = [Source(*r) for r in rows]
        self._cache = {}
