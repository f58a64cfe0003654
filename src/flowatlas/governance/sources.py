"""The exporter registry: which addresses may send flows, as which source, on what basis.

Kept in the control plane (table ``sources`` of ``<store>/control.sqlite``; stores made before
it was folded in had a ``sources.sqlite`` of their own, imported by the control plane's
migration) so that the CLI, the collector and the service share it; the collector notices
changes made by other processes within a second. Every change is audited. Lookups take the
longest matching prefix and are cached per exporter address.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from flowatlas.addresses import AddressError, parse_prefix
from flowatlas.collect.sources import BASES, Source, SourceError
from flowatlas.governance.changes import Actor, ChangeLog
from flowatlas.governance.controlplane import ControlPlane, ControlPlaneError

__all__ = ["BASES", "Source", "SourceError", "SourceRegistry"]


class SourceRegistry:
    """Registered exporters (``collect.sources.SourceLookup`` for the decoder).

    Reads use a connection of its own, confined to the thread that built the registry (the
    collector builds it on its receiving thread); changes go through the control plane, with
    their audit entry in the same transaction.
    """

    def __init__(self, control: ControlPlane, *, refresh_seconds: float = 1.0,
                 actor: Actor | None = None) -> None:
        self.control = control
        self.changes = ChangeLog(control, actor)
        self._db = sqlite3.connect(control.path, timeout=30.0, isolation_level=None)
        self.refresh_seconds = refresh_seconds
        self._version = -1
        self._checked = 0.0
        self._sources: list[Source] = []
        self._cache: dict[bytes, Source | None] = {}
        self._reload()

    @classmethod
    def for_store(cls, store: str | Path, *, actor: Actor | None = None,
                  create: bool = True) -> SourceRegistry:
        """The store's registry; ``create=False`` (the `sources` commands): a path that is
        not a store is an error naming it, and so is a damaged control database."""
        try:
            return cls(ControlPlane.for_store(store, create=create), actor=actor)
        except ControlPlaneError as exc:
            raise SourceError(str(exc)) from exc

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
        with self.changes.change("sources.add", prefix=p.text, source_id=source_id,
                                 partner=partner.strip(), sampling=sampling,
                                 basis=basis) as change:
            change.con.execute(
                "INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (p.text, p.low, p.high, source_id, partner.strip(), sampling, basis, now),
            )
        self._reload()
        return Source(p.text, source_id, partner.strip(), sampling, basis, now, p.low, p.high)

    def remove(self, prefix_or_id: str) -> int:
        """Remove by prefix text or by source id; returns how many entries went."""
        arg: int | str
        params: dict[str, int | str]
        if prefix_or_id.isdigit():
            sql, arg, params = ("DELETE FROM sources WHERE source_id = ?", int(prefix_or_id),
                                {"source_id": int(prefix_or_id)})
        else:
            try:
                text = parse_prefix(prefix_or_id).text
            except AddressError as exc:
                raise SourceError(str(exc)) from exc
            sql, arg, params = "DELETE FROM sources WHERE prefix = ?", text, {"prefix": text}
        with self.changes.change("sources.remove", **params) as change:
            gone = int(change.con.execute(sql, (arg,)).rowcount)
            change.rows = gone
            change.outcome = "ok" if gone else "not-found"
        self._reload()
        return gone

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
