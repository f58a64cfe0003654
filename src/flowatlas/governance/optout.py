"""Opt-outs: prefixes and ASNs whose flows are dropped at ingest and purged from history.

Every change is audited. The ingest filter re-reads the list when the database changes (checked
at most once a second), so a collector in another process applies a new opt-out within a second;
``add`` purges what is already stored before it returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from flowatlas.addresses import AddressError, Prefix, parse_prefix
from flowatlas.governance.audit import AuditLog
from flowatlas.governance.changes import Actor, ChangeLog
from flowatlas.governance.controlplane import ControlPlane
from flowatlas.ranges import in_prefixes
from flowatlas.store import FlowStore


class OptOutError(ValueError):
    pass


@dataclass(frozen=True)
class OptOutSet:
    prefixes: tuple[Prefix, ...] = ()
    asns: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.prefixes or self.asns)

    def mask(self, table: pa.Table) -> pa.Array:
        """True for rows with either endpoint inside an opted-out prefix or AS."""
        hit = np.zeros(table.num_rows, dtype=bool)
        if self.prefixes:
            for col in ("src_addr", "dst_addr"):
                hit |= in_prefixes(table.column(col), self.prefixes)
        if self.asns:
            asns = pa.array(self.asns, pa.uint32())
            for col in ("src_as", "dst_as"):
                hit |= np.asarray(
                    pc.fill_null(pc.is_in(table.column(col), asns), False).to_numpy(
                        zero_copy_only=False
                    ),
                    dtype=bool,
                )
        return pa.array(hit)


def parse_target(text: str) -> tuple[str, str]:
    """``AS64500``/``as64500`` -> ("asn", "64500"); a prefix or address -> ("prefix", its CIDR)."""
    t = text.strip()
    if t.lower().startswith("as") and t[2:].isdigit():
        asn = int(t[2:])
        if not 0 < asn < 1 << 32:
            raise OptOutError(f"AS number {asn} out of range")
        return "asn", str(asn)
    try:
        return "prefix", parse_prefix(t).text
    except AddressError:
        raise OptOutError(f"opt-out {text!r} is neither a prefix/address nor AS<number>") from None


class OptOuts:
    """Opt-outs; every change is audited as made by ``actor``."""

    def __init__(self, control: ControlPlane, audit: AuditLog | None = None,
                 actor: Actor | None = None) -> None:
        self.control = control
        self.changes = ChangeLog(control, actor, audit=audit)
        self.audit = self.changes.audit

    def current(self) -> OptOutSet:
        rows = self.control.db.execute("SELECT kind, value FROM optouts").fetchall()
        return OptOutSet(
            tuple(parse_prefix(str(v)) for k, v in rows if k == "prefix"),
            tuple(int(v) for k, v in rows if k == "asn"),
        )

    def list(self) -> list[tuple[str, str, str, float]]:
        return [
            (str(a), str(b), str(c), float(d))
            for a, b, c, d in self.control.db.execute(
                "SELECT kind, value, reason, added_at FROM optouts ORDER BY kind, value"
            ).fetchall()
        ]

    def add(self, target: str, reason: str, store: FlowStore | None) -> int:
        """Register an opt-out and purge stored flows it covers; returns rows purged."""
        kind, value = parse_target(target)
        if not reason.strip():
            raise OptOutError("an opt-out needs a reason (it is audited)")
        self.control.db.execute(
            "INSERT OR REPLACE INTO optouts VALUES (?, ?, ?, ?)",
            (kind, value, reason.strip(), time.time()),
        )
        single = (
            OptOutSet((parse_prefix(value),), ())
            if kind == "prefix"
            else OptOutSet((), (int(value),))
        )
        purged, outcome = 0, "error:purge"
        # The purge rewrites stored files for as long as it takes, outside the control plane's
        # write lock; the entry is written whether or not it finishes.
        try:
            purged = store.delete_where(single.mask) if store is not None else 0
            outcome = "ok"
        finally:
            self.changes.record("optout.add", rows=purged, outcome=outcome, kind=kind,
                                value=value, reason=reason.strip())
        return purged

    def remove(self, target: str) -> bool:
        kind, value = parse_target(target)
        with self.changes.change("optout.remove", kind=kind, value=value) as change:
            gone = change.con.execute(
                "DELETE FROM optouts WHERE kind = ? AND value = ?", (kind, value)
            ).rowcount > 0
            change.outcome = "ok" if gone else "not-found"
        return gone


class IngestFilter:
    """Which flows are opted out, re-read when the list changes (the ingest pipeline's
    ``OptOutStage`` asks it; calling it filters a table directly)."""

    def __init__(self, control: ControlPlane, refresh_seconds: float = 1.0) -> None:
        self.control = control
        self.refresh_seconds = refresh_seconds
        self._set = OptOutSet()
        self._version: tuple[int, int] | None = None
        self._checked = 0.0
        self.dropped = 0

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.refresh_seconds and self._version is not None:
            return
        self._checked = now
        row = self.control.db.execute(
            "SELECT count(*), coalesce(max(added_at), 0) FROM optouts"
        ).fetchone()
        version = (int(row[0]), int(float(row[1]) * 1e6))
        if version != self._version:
            self._set = OptOuts(self.control).current()
            self._version = version

    def opted_out(self, table: pa.Table) -> npt.NDArray[np.bool_]:
        """True for the rows of ``table`` an opt-out covers (the ingest pipeline drops them)."""
        self._refresh()
        if not self._set or not table.num_rows:
            return np.zeros(table.num_rows, dtype=bool)
        return np.asarray(self._set.mask(table).to_numpy(zero_copy_only=False), dtype=bool)

    def __call__(self, table: pa.Table | pa.RecordBatch) -> pa.Table:
        t = table if isinstance(table, pa.Table) else pa.Table.from_batches([table])
        mask = self.opted_out(t)
        hits = int(np.count_nonzero(mask))
        if not hits:
            return t
        self.dropped += hits
        return t.filter(pa.array(~mask))
