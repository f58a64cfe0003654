"""The filter expression tree: what a filter means, independent of any engine.

The filter language (query/filter.py) parses into these nodes, scopes and analytics build them
directly, and each engine translates them (engines/sql.py). Values are data, never SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypeAlias

from flowatlas.addresses import Prefix


class Direction(StrEnum):
    SRC = "src"
    DST = "dst"
    ANY = "any"


class Op(StrEnum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    IN = "in"


# Numeric attributes the language knows, and the column(s) each one names by direction.
NUMERIC_COLUMNS: dict[str, dict[Direction, tuple[str, ...]]] = {
    "port": {Direction.SRC: ("src_port",), Direction.DST: ("dst_port",),
             Direction.ANY: ("src_port", "dst_port")},
    "as": {Direction.SRC: ("src_as",), Direction.DST: ("dst_as",),
           Direction.ANY: ("src_as", "dst_as")},
    "if": {Direction.SRC: ("in_if",), Direction.DST: ("out_if",),
           Direction.ANY: ("in_if", "out_if")},
    "proto": {Direction.ANY: ("protocol",)},
    "bytes": {Direction.ANY: ("bytes",)},
    "packets": {Direction.ANY: ("packets",)},
}


@dataclass(frozen=True)
class AddrMatch:
    """An endpoint inside any of ``prefixes`` (single addresses are one-address prefixes)."""

    direction: Direction
    prefixes: tuple[Prefix, ...]


@dataclass(frozen=True)
class NumMatch:
    """``attribute op values`` over the attribute's column(s) for a direction."""

    attribute: str
    direction: Direction
    op: Op
    values: tuple[int, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return NUMERIC_COLUMNS[self.attribute][self.direction]


@dataclass(frozen=True)
class FlagsMatch:
    """All TCP flags in ``mask`` are set."""

    mask: int


# Per-record figures nfdump computes rather than stores (nfdump(1): duration, pps, bps, bpp).
DERIVED = ("duration", "pps", "bps", "bpp")


@dataclass(frozen=True)
class DerivedMatch:
    """``metric op value`` over a computed figure, in nfdump's integer units.

    ``duration`` is milliseconds (end - start); ``pps`` is 1000 * packets // duration and
    ``bps`` 8000 * bytes // duration (0 when the duration is 0); ``bpp`` is bytes // packets.
    """

    metric: str
    op: Op
    value: int


@dataclass(frozen=True)
class IcmpMatch:
    """ICMP/ICMPv6 type or code. Flow records carry both in the destination port, type in the
    high byte and code in the low one (what NetFlow v5 does and nfcapd stores), so the match is
    ``proto in (icmp, icmp6)`` and that byte."""

    part: str  # "type" or "code"
    op: Op
    values: tuple[int, ...]


@dataclass(frozen=True)
class RouterMatch:
    """The exporting router's address inside any of ``prefixes`` (nfdump's ``router ip``)."""

    prefixes: tuple[Prefix, ...]


@dataclass(frozen=True)
class TimeMatch:
    """``column op value`` on a flow's start or end time (nfdump's ``-t`` end containment)."""

    column: str  # "time_start" or "time_end"
    op: Op
    value: datetime

    def __post_init__(self) -> None:
        if self.column not in ("time_start", "time_end") or self.op is Op.IN:
            raise ValueError(f"not a time comparison: {self.column} {self.op.value}")


@dataclass(frozen=True)
class And:
    children: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    child: Expr


@dataclass(frozen=True)
class All:
    """Matches every flow (the empty filter, nfdump's ``any``)."""


Expr: TypeAlias = (AddrMatch | NumMatch | FlagsMatch | DerivedMatch | IcmpMatch | RouterMatch
                   | TimeMatch | And | Or | Not | All)

ALL = All()


def conjoin(*exprs: Expr | None) -> Expr:
    """AND together, dropping ``All`` and ``None``; flattens nested ANDs."""
    parts: list[Expr] = []
    for e in exprs:
        if e is None or isinstance(e, All):
            continue
        parts.extend(e.children if isinstance(e, And) else (e,))
    if not parts:
        return ALL
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def addresses(direction: Direction, *prefixes: Prefix) -> AddrMatch:
    return AddrMatch(direction, tuple(prefixes))
