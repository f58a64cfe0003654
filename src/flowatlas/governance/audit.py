"""The audit log: every request, appended to a SHA-256 hash chain.

Entry ``n`` is stored as canonical JSON (the exact bytes hashed) with
``hash_n = SHA-256(hash_{n-1} || entry_n)`` and ``hash_0`` all zeros; each entry names its own
sequence number. Editing an entry breaks its hash, removing or reordering one breaks the chain or
the sequence. Cutting entries off the end leaves a valid shorter chain, so the head (last
sequence number and hash) is also written to a file beside the database after every append and
can be published to an outside witness (``flowatlas audit head``) and checked against later.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flowatlas.governance.controlplane import ControlPlane

GENESIS = bytes(32)
HEAD_FILENAME = "audit-head.json"


def canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str).encode()


def chain(prev: bytes, entry_bytes: bytes) -> bytes:
    return hashlib.sha256(prev + entry_bytes).digest()


@dataclass
class Verification:
    entries: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS.hex()
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog:
    def __init__(self, control: ControlPlane, clock: Callable[[], float]) -> None:
        self.control = control
        self.clock = clock
        self.head_path = control.path.parent / HEAD_FILENAME

    def append(self, **fields: Any) -> int:
        """Append one entry (tenant, key_id, route, params, purpose, rows, outcome, ...)."""
        with self.control.write() as con:
            return self.append_in(con, **fields)

    def append_in(self, con: sqlite3.Connection, **fields: Any) -> int:
        """Append inside a transaction the caller holds (``ControlPlane.write``)."""
        row = con.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (1, GENESIS) if row is None else (int(row[0]) + 1, bytes(row[1]))
        entry = {"seq": seq, "ts": _iso(self.clock()), **fields}
        data = canonical(entry)
        digest = chain(prev, data)
        con.execute("INSERT INTO audit VALUES (?, ?, ?)", (seq, data.decode(), digest))
        # Written under the write lock, so heads land in sequence order.
        self._write_head(seq, digest)
        return seq

    def _write_head(self, seq: int, digest: bytes) -> None:
        tmp = self.head_path.with_name(f".{HEAD_FILENAME}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps({"seq": seq, "hash": digest.hex()}))
        os.replace(tmp, self.head_path)

    def head(self) -> tuple[int, str]:
        row = self.control.db.execute(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return (0, GENESIS.hex()) if row is None else (int(row[0]), bytes(row[1]).hex())

    def entries(self, after: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
        sql = "SELECT entry FROM audit WHERE seq > ? ORDER BY seq"
        params: tuple[int, ...] = (after,)
        if limit is not None:
            sql += " LIMIT ?"
            params = (after, limit)
        for (text,) in self.control.db.execute(sql, params):
            yield json.loads(text)

    def verify(self, expect_head: tuple[int, str] | None = None) -> Verification:
        """Recompute the chain; report every broken link, gap, reorder and head mismatch."""
        v = Verification()
        prev = GENESIS
        expected_seq = 1
        for seq, text, stored in self.control.db.execute(
            "SELECT seq, entry, hash FROM audit ORDER BY seq"
        ):
            v.entries += 1
            if seq != expected_seq:
                v.problems.append(
                    f"entry {expected_seq}"
                    + (f"..{seq - 1}" if seq - 1 > expected_seq else "")
                    + " missing"
                )
            try:
                inner = json.loads(text).get("seq")
            except ValueError:
                inner = None
            if inner != seq:
                v.problems.append(f"entry {seq} claims sequence number {inner} (moved or edited)")
            digest = chain(prev, str(text).encode())
            if digest != bytes(stored):
                v.problems.append(f"entry {seq}: hash does not match its content and predecessor")
            prev = bytes(stored)
            expected_seq = seq + 1
            v.head_seq, v.head_hash = seq, prev.hex()
        for label, want in (("head file", self._read_head()), ("expected head", expect_head)):
            if want is None:
                continue
            want_seq, want_hash = want
            if want_seq > v.head_seq:
                v.problems.append(
                    f"{label} names entry {want_seq} but the log ends at {v.head_seq} "
                    "(entries cut off the end)"
                )
            elif want_seq == v.head_seq and want_hash != v.head_hash:
                v.problems.append(f"{label} hash differs at entry {want_seq} (log rewritten)")
            elif want_seq < v.head_seq and label == "expected head":
                stored_row = self.control.db.execute(
                    "SELECT hash FROM audit WHERE seq = ?", (want_seq,)
                ).fetchone()
                if stored_row is None or bytes(stored_row[0]).hex() != want_hash:
                    v.problems.append(f"{label} hash differs at entry {want_seq} (log rewritten)")
        return v

    def _read_head(self) -> tuple[int, str] | None:
        try:
            data = json.loads(self.head_path.read_text())
            return int(data["seq"]), str(data["hash"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return (-1, "unreadable")

    def report(self) -> dict[str, Any]:
        """A transparency summary: per tenant (requests, outcomes, rows, routes, purposes) and
        per data source (rows disclosed, to whom)."""
        tenants: dict[str, dict[str, Any]] = defaultdict(
            lambda: {
                "requests": 0,
                "rows": 0,
                "outcomes": Counter(),
                "routes": Counter(),
                "purposes": Counter(),
                "reveals": 0,
            }
        )
        sources: dict[str, dict[str, Any]] = defaultdict(lambda: {"rows": 0, "tenants": Counter()})
        for e in self.entries():
            who = e.get("tenant") or (f"operator:{e['actor']}" if e.get("actor") else None)
            t = tenants[str(who or "(unauthenticated)")]
            t["requests"] += 1
            t["rows"] += int(e.get("rows") or 0)
            t["outcomes"][str(e.get("outcome"))] += 1
            t["routes"][str(e.get("route"))] += 1
            if e.get("purpose"):
                t["purposes"][str(e["purpose"])] += 1
            if e.get("route") == "reveal" and e.get("outcome") == "ok":
                t["reveals"] += 1
            for src, rows in (e.get("sources") or {}).items():
                sources[str(src)]["rows"] += int(rows)
                sources[str(src)]["tenants"][str(e.get("tenant"))] += int(rows)
        return {
            "tenants": {
                k: {
                    **v,
                    "outcomes": dict(v["outcomes"]),
                    "routes": dict(v["routes"]),
                    "purposes": dict(v["purposes"]),
                }
                for k, v in sorted(tenants.items())
            },
            "sources": {
                k: {"rows": v["rows"], "tenants": dict(v["tenants"])}
                for k, v in sorted(sources.items())
            },
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
