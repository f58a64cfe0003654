"""The operator's prefix-class table: which address space is residential/eyeball.

Counterpart addresses inside a pseudonymised class are returned as Crypto-PAn pseudonyms.
SQLite is the operator-maintained store; lookups go through ``flowatlas.ranges.NetClassTable``
built from it, the same implementation the investigations use for their ``--netclass`` tables.
"""

from __future__ import annotations

import re

from flowatlas.addresses import AddressError, Prefix, parse_prefix
from flowatlas.governance.changes import Actor, ChangeLog
from flowatlas.governance.controlplane import ControlPlane
from flowatlas.ranges import NetClassTable

PSEUDONYMISED = frozenset({"residential", "eyeball"})
_CLASS = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class ClassError(ValueError):
    pass


class PrefixClasses:
    """The prefix-class table; every change is audited as made by ``actor``."""

    def __init__(self, control: ControlPlane, actor: Actor | None = None) -> None:
        self.control = control
        self.changes = ChangeLog(control, actor)

    def set(self, prefix: str, cls: str) -> Prefix:
        p = _checked(prefix, cls)
        with self.changes.change("classes.set", prefix=p.text, **{"class": cls}) as change:
            change.con.execute("INSERT OR REPLACE INTO prefix_classes VALUES (?, ?)", (p.text, cls))
        return p

    def set_many(self, rows: list[tuple[str, str]], source: str) -> int:
        """Set many classes at once (an import from ``source``): one transaction, one audit
        entry naming the source and the count; nothing is set if any row is bad."""
        checked = [(_checked(prefix, cls).text, cls) for prefix, cls in rows]
        with self.changes.change("classes.import", source=source, count=len(checked)) as change:
            change.con.executemany("INSERT OR REPLACE INTO prefix_classes VALUES (?, ?)", checked)
            change.rows = len(checked)
        return len(checked)

    def remove(self, prefix: str) -> int:
        try:
            text = parse_prefix(prefix).text
        except AddressError as exc:
            raise ClassError(str(exc)) from exc
        with self.changes.change("classes.remove", prefix=text) as change:
            gone = int(change.con.execute(
                "DELETE FROM prefix_classes WHERE prefix = ?", (text,)
            ).rowcount)
            change.outcome = "ok" if gone else "not-found"
        return gone

    def list(self) -> list[tuple[str, str]]:
        return [
            (str(a), str(b))
            for a, b in self.control.db.execute(
                "SELECT prefix, class FROM prefix_classes ORDER BY class, prefix"
            ).fetchall()
        ]

    def table(self) -> NetClassTable:
        """The table as the lookup the analytics use (vectorised; most specific prefix wins)."""
        return NetClassTable.from_rows(self.list())


def _checked(prefix: str, cls: str) -> Prefix:
    if not _CLASS.match(cls):
        raise ClassError(
            f"class {cls!r}: use a short lowercase word such as "
            f"{', '.join(sorted(PSEUDONYMISED))}, hosting, enterprise"
        )
    try:
        return parse_prefix(prefix)
    except AddressError as exc:
        raise ClassError(str(exc)) from exc
