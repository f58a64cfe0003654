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
RATES = ("pps", "bps", "bpp")
"""nfdump's per-group rates: packets and bits per second over first..last, bytes per packet."""
SHARES = ("flows_pct", "packets_pct", "bytes_pct", "cumul_pct")
"""Each group's share of all selected flows, packets and bytes (nfdump's "(%)" columns), and
the running total of the ordering measure's share in result order (SiLK rwstats' cumul_%)."""
ADDRESS_KEYS = ("ip", "src_addr", "dst_addr", "exporter", "peer", "local")
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
class StatSpec:
    """One nfdump ``-s`` statistic: ``FIELD[,FIELD...][/PREFIX[/PREFIX6]][/ORDER]``."""

    keys: tuple[str, ...]
    order: str | None = None
    rollup: tuple[tuple[str, int, int], ...] = ()


def parse_stat(spec: str) -> StatSpec:
    """``ip/bytes``, ``dstport/packets``, ``srcip,dstport``, ``ip/24`` (a number is always a
    prefix length, never an order), ``ip/24/48`` (IPv4 by /24, IPv6 by /48), ``ip/24/bytes``,
    ``srcip/24,dstport`` (a length belongs to the key it follows, as in nfdump's -A).

    A single length applies to both families (IPv4 capped at /32). An order may only end the
    whole statistic.
    """
    items = [i.strip() for i in spec.strip().split(",")]
    if not any(items):
        raise QueryError(f"statistic {spec!r} names no field")
    keys: list[str] = []
    rollup: list[tuple[str, int, int]] = []
    order: str | None = None
    for index, item in enumerate(items):
        head, *parts = item.split("/")
        if not head.strip():
            raise QueryError(f"statistic {spec!r}: empty field name")
        key = normalise_key(head.strip())
        keys.append(key)
        lengths: list[int] = []
        for part in parts:
            word = part.strip().lower()
            if word.isdigit() and order is None and len(lengths) < 2:
                lengths.append(int(word))
            elif word and not word.isdigit() and order is None and index == len(items) - 1:
                order = {"tstart": "first", "tend": "last"}.get(word, word)
            else:
                raise QueryError(f"statistic {spec!r}: cannot read {part!r} (use FIELD/ORDER, "
                                 "FIELD/24 or FIELD/24/48, the order last)")
        if lengths:
            v4, v6 = (lengths[0], lengths[1]) if len(lengths) == 2 else (min(lengths[0], 32),
                                                                          lengths[0])
            if not (0 <= v4 <= 32 and 0 <= v6 <= 128):
                raise QueryError(f"statistic {spec!r}: prefix lengths are 0-32 for IPv4, "
                                 "0-128 for IPv6")
            if key not in ADDRESS_KEYS:
                raise QueryError(f"statistic {spec!r}: a prefix length needs an address field "
                                 f"(ip, srcip, dstip), not {head.strip()!r}")
            rollup.append((key, v4, v6))
    return StatSpec(tuple(keys), order, tuple(rollup))


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
    the addresses that the anchored keys (peer, local, ...) are relative to. ``rollup`` groups
    address keys by prefix: (key, IPv4 length, IPv6 length). ``rates`` adds pps/bps/bpp,
    ``shares`` the percentage columns, ``distinct`` a ``distinct_FIELD`` count per group.
    """

    selection: Selection
    keys: tuple[str, ...] = ()
    order_by: str = "flows"
    limit: int | None = 10
    estimate: bool = False
    bin_seconds: int | None = None
    ascending: bool = False
    anchor: tuple[Prefix, ...] = ()
    rollup: tuple[tuple[str, int, int], ...] = ()
    rates: bool = False
    shares: bool = False
    distinct: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(normalise_key(k) for k in self.keys))
        object.__setattr__(self, "distinct", tuple(normalise_key(k) for k in self.distinct))
        for key, v4, v6 in self.rollup:
            if key not in self.keys or key not in ADDRESS_KEYS:
                raise QueryError(f"prefix roll-up of {key!r}: not an address key of this query")
            if not (0 <= v4 <= 32 and 0 <= v6 <= 128):
                raise QueryError("prefix lengths are 0-32 for IPv4, 0-128 for IPv6")
        bad = [k for k in self.distinct if k not in FIELD_NAMES]
        if bad:
            raise QueryError(f"distinct counts take stored fields (src_addr, dst_port, ...), "
                             f"not {', '.join(bad)}")
        if any(k in ANCHORED_KEYS for k in self.keys) and not self.anchor:
            raise QueryError("peer/local/direction keys need an anchor address")
        if sum(k in BOTH_ENDPOINT_KEYS for k in self.keys) > 1:
            raise QueryError("at most one of ip/port/as/if may be a key")
        extra = (*(RATES if self.rates else ()), *(f"distinct_{d}" for d in self.distinct))
        if self.order_by not in (*ORDERABLE, *extra, *self.keys, "bin"):
            known = ", ".join((*ORDERABLE, *RATES, *extra[len(RATES) if self.rates else 0:]))
            raise QueryError(f"cannot order by {self.order_by!r}; use one of {known}")
        if self.limit is not None and not 0 < self.limit <= MAX_LIMIT:
            raise QueryError(f"limit must be between 1 and {MAX_LIMIT}")
        if self.bin_seconds is not None and not 1 <= self.bin_seconds <= 366 * 86_400:
            raise QueryError("time bin must be between 1 second and a year")
