"""The operator's prefix-class table: which address space is residential/eyeball.

Counterpart addresses inside a pseudonymised class are returned as Crypto-PAn pseudonyms.
SQLite is the operator-maintained store; lookups go through ``analytics.netclass.NetClassTable``
built from it, the same implementation the investigations use for their ``--netclass`` tables.
"""

from __future__ import annotations

import re

from flowatlas.addresses import AddressError, Prefix, parse_prefix
from flowatlas.analytics.netclass import NetClassTable
from flowatlas.governance.controlplane import ControlPlane

PSEUDONYMISED = frozenset({"residential", "eyeball"})
_CLASS = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class ClassError(ValueError):
    pass


class PrefixClasses:
    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    def set(self, prefix: str, cls: str) -> Prefix:
        if not _CLASS.match(cls):
            raise ClassError(
                f"class {cls!r}: use a short lowercase word such as "
                f"{', '.join(sorted(PSEUDONYMISED))}, hosting, enterprise"
            )
        try:
            p = parse_prefix(prefix)
        except AddressError as exc:
            raise ClassError(str(exc)) from exc
        self.control.db.execute(
            "INSERT OR REPLACE INTO prefix_classes VALUES (?, ?)", (p.text, cls)
        )
        return p

    def remove(self, prefix: str) -> int:
        try:
            text = parse_prefix(prefix).text
        except AddressError as exc:
            raise ClassError(str(exc)) from exc
        return self.control.db.execute(
            "DELETE FROM prefix_classes WHERE prefix = ?", (text,)
        ).rowcount

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
