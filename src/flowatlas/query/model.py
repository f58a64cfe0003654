"""The query model: what is asked, independent of the engine that answers it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from flowatlas.addresses import Prefix
from flowatlas.query.expr import ALL, Expr, Op, TimeMatch, conjoin
from flowatlas.query.window import Window
from flowatlas.schema import FIELD_NAMES

# Keys that count both endpoints of a flow, as nfdump's -s ip/port/as do.
BOTH_ENDPOINT_KEYS: dict[str, tuple[str, str]] = {
    "ip": ("src_addr", "dst_addr"),
    "port": ("src_port", "dst_port"),
    "as": ("src_as", "dst_as"),
    "if": ("in_if", "out_if"),
}
KEY_ALIASES = {"proto": "protocol", "srcip": "src_addr", "dstip": "dst_addr",
               "srcport": "src_port", "dstport": "dst_port", "srcas": "src_as",
               "dstas": "dst_as", "src_ip": "src_addr", "dst_ip": "dst_addr"}
# Keys relative to an anchor (the addresses a profile or graph is about): the other endpoint,
# the anchor's own endpoint, their ports, and whether the flow left ("out") or reached ("in") it.
ANCHORED_KEYS = ("peer", "local", "peer_port", "local_port", "direction")
METRICS = ("flows", "packets", "bytes", "first", "last")
ORDERABLE = ("flows", "packets", "bytes", "first", "last")
MAX_LIMIT = 10_000_000


class QueryError(ValueError):
    """A query the model cannot express (unknown key, metric or order)."""


def normalise_key(name: str) -> str:
    key = KEY_ALIASES.get(name.lower(), name.lower())
    if key not in BOTH_ENDPOINT_KEYS and key not in FIELD_NAMES and key not in ANCHORED_KEYS:
        known = ", ".join(sorted({*BOTH_ENDPOINT_KEYS, *FIELD_NAMES, *KEY_ALIASES}))
        raise QueryError(f"unknown field {name!r}; known: {known}")
    return key


@dataclass(frozen=True)
class Selection:
    """Which flows: a filter, a time window, and a scope the caller cannot widen."""

    filter: Expr = ALL
    window: Window = field(default_factory=Window)
    scope: Expr = ALL

    def __post_init__(self) -> None:
        # A window's end containment (nfdump -t) becomes a filter term: code that narrows the
        # window later (day groups, analytics probes) rebuilds windows from since/until only.
        if self.window.ends_by is not None:
            ends = TimeMatch("time_end", Op.LE, self.window.ends_by)
            object.__setattr__(self, "filter", conjoin(self.filter, ends))
            object.__setattr__(self, "window", replace(self.window, ends_by=None))

    @property
    def where(self) -> Expr:
        return conjoin(self.scope, self.filter)


@dataclass(frozen=True)
class FlowsQuery:
    """Matching records, newest first."""

    selection: Selection
    limit: int = 100
    oldest_first: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.limit <= MAX_LIMIT:
            raise QueryError(f"limit must be between 1 and {MAX_LIMIT}")


@dataclass(frozen=True)
class AggregateQuery:
    """Group flows by keys (and optionally time bins), measure, order, keep the top ``limit``.

    ``estimate`` multiplies packets and bytes by each flow's sampling rate. ``anchor`` names
    the addresses that the anchored keys (peer, local, ...) are relative to.
    """

    selection: Selection
    keys: tuple[str, ...] = ()
    order_by: str = "flows"
    limit: int | None = 10
    estimate: bool = False
    bin_seconds: int | None = None
    ascending: bool = False
    anchor: tuple[Prefix, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(normalise_key(k) for k in self.keys))
        if any(k in ANCHORED_KEYS for k in self.keys) and not self.anchor:
            raise QueryError("peer/local/direction keys need an anchor address")
        if sum(k in BOTH_ENDPOINT_KEYS for k in self.keys) > 1:
            raise QueryError("at most one of ip/port/as/if may be a key")
        if self.order_by not in ORDERABLE and self.order_by not in (*self.keys, "bin"):
            raise QueryError(f"cannot order by {self.order_by!r}; use one of {', '.join(ORDERABLE)}")
        if self.limit is not None and not 0 < self.limit <= MAX_LIMIT:
            raise QueryError(f"limit must be between 1 and {MAX_LIMIT}")
        if self.bin_seconds is not None and not 1 <= self.bin_seconds <= 366 * 86_400:
            raise QueryError("time bin must be between 1 second and a year")
