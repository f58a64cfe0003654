"""The filter expression tree: what a filter means, independent of any engine.

The filter language (query/filter.py) parses into these nodes, scopes and analytics build them
directly, and each engine translates them (engines/sql.py). Values are data, never SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass
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


Expr: TypeAlias = AddrMatch | NumMatch | FlagsMatch | And | Or | Not | All

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
