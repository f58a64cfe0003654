"""Address terms of a pseudonymised tenant, read in the space that tenant sees.

Such a tenant sees ``display(a) = a`` outside pseudonymised space (PS) and its Crypto-PAn
pseudonym ``enc(a)`` inside it. Every address it names (filter terms, profile targets, graph
seeds, C2s, trace targets) is read in that same space: ``net T`` matches a flow when the
*displayed* address lies in T, i.e. when the clear address lies in ``(T - PS) | (dec(T) & PS)``.
Crypto-PAn preserves prefixes, so ``dec`` of a /k is exactly a /k and the translation is exact.

A question asked this way is a question about what the tenant already sees, so no sequence of
them can teach it a clear address (halving ``src net`` in clear space, issue 18.8, learns 0 bits).
A term that reaches into clear pseudonymised space without naming pseudonyms there is refused:
it could only be a test of a clear address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from flowatlas.addresses import Prefix, pack, parse_prefix, unpack
from flowatlas.governance.classes import PSEUDONYMISED
from flowatlas.governance.pseudonym import CryptoPAn
from flowatlas.query.expr import ALL, AddrMatch, And, Expr, Not, Or, RouterMatch
from flowatlas.ranges import NetClassTable

Range = tuple[int, int]
_V4_BASE = 0xFFFF << 32
_MAX_PIECES = 4096


class PseudonymTermError(PermissionError):
    """A term that would read clear pseudonymised space (or cannot be read either way)."""


def _int(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def _subtract(ranges: Sequence[Range], cut: Sequence[Range]) -> list[Range]:
    out: list[Range] = []
    for lo, hi in ranges:
        pieces = [(lo, hi)]
        for a, b in cut:
            nxt = []
            for x, y in pieces:
                if b < x or a > y:
                    nxt.append((x, y))
                    continue
                if x < a:
                    nxt.append((x, a - 1))
                if y > b:
                    nxt.append((b + 1, y))
            pieces = nxt
        out.extend(pieces)
    return out


def _intersect(lo: int, hi: int, ranges: Sequence[Range]) -> list[Range]:
    return [(max(lo, a), min(hi, b)) for a, b in ranges if a <= hi and b >= lo]


def _prefixes(ranges: Sequence[Range]) -> list[Prefix]:
    """The fewest CIDR prefixes covering exactly ``ranges``."""
    out: list[Prefix] = []
    for lo, hi in ranges:
        while lo <= hi:
            size = (lo & -lo).bit_length() - 1 if lo else 128
            while (1 << size) > hi - lo + 1:
                size -= 1
            length = 128 - size
            if length >= 96 and lo >> 32 == 0xFFFF:
                net: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.IPv4Network(
                    (lo & 0xFFFFFFFF, length - 96)
                )
            else:
                net = ipaddress.IPv6Network((lo, length))
            out.append(parse_prefix(str(net.network_address) if size == 0 else str(net)))
            if len(out) > _MAX_PIECES:
                raise PseudonymTermError("an address term splits into too many pieces around "
                                         "pseudonymised space; name narrower prefixes")
            lo += 1 << size
    return out


@dataclass(frozen=True)
class Reading:
    """One term read in the tenant's space: the clear ranges it means, and how it got there."""

    prefix: Prefix
    clear: list[Range]  # T - PS: addresses shown as themselves
    pseudo: list[Range]  # dec(T) & PS: addresses shown as pseudonyms inside T
    decrypted: Range  # dec(T)
    hidden: bool  # T reaches into clear pseudonymised space


class PseudonymSpace:
    """The pseudonymised part of address space for one tenant (its key, minus its own prefixes)."""

    def __init__(self, hidden: Sequence[Range], pan: CryptoPAn) -> None:
        self.hidden = sorted(hidden)
        self.pan = pan

    @classmethod
    def of(cls, classes: NetClassTable, pan: CryptoPAn, exempt: Sequence[Prefix] = ()
           ) -> PseudonymSpace | None:
        """The space as ``pseudonymise_table`` applies it, or None when nothing is hidden."""
        wanted = {i for i, name in enumerate(classes.names) if name in PSEUDONYMISED}
        ranges = [
            (_int(lo.tobytes()), _int(hi.tobytes()))
            for lo, hi, c in zip(classes.lows, classes.highs, classes.classes, strict=True)
            if int(c) in wanted
        ]
        ranges = _subtract(ranges, [(_int(p.low), _int(p.high)) for p in exempt])
        return cls(ranges, pan) if ranges else None

    def read(self, p: Prefix) -> Reading:
        lo, hi = _int(p.low), _int(p.high)
        clear = _subtract([(lo, hi)], self.hidden)
        span = hi - lo
        d = _int(pack(self.pan.decrypt(unpack(p.low))))
        d_lo = d & ~span
        # The v4 family bits stay v4 under Crypto-PAn: dec of ::ffff:a.b.c.d/k keeps the prefix.
        if lo >> 32 == 0xFFFF:
            d_lo = _V4_BASE | (d_lo & 0xFFFFFFFF)
        pseudo = _intersect(d_lo, d_lo + span, self.hidden)
        return Reading(p, clear, pseudo, (d_lo, d_lo + span), bool(_intersect(lo, hi, self.hidden)))

    def term(self, p: Prefix) -> tuple[Prefix, ...]:
        """What a filter term means in clear space (possibly nothing: it matches no flow)."""
        r = self.read(p)
        if r.hidden and not r.pseudo:
            raise PseudonymTermError(_hidden_message(p))
        return tuple(_prefixes(r.clear + r.pseudo))

    def target(self, p: Prefix) -> Prefix:
        """The one clear prefix a profile, seed, C2 or trace target names.

        Pseudonyms share address space with clear addresses: a target wholly among this
        tenant's pseudonyms names the pseudonym (pivots come from results), even where a clear
        address of the same text exists (filters match both).
        """
        r = self.read(p)
        if r.pseudo == [r.decrypted]:
            return _prefixes([r.decrypted])[0]
        if r.clear == [(_int(p.low), _int(p.high))] and not r.pseudo:
            return p
        if r.hidden and not r.pseudo:
            raise PseudonymTermError(_hidden_message(p))
        raise PseudonymTermError(
            f"{p.text} straddles pseudonymised space; name a prefix wholly inside it (as "
            "pseudonyms) or wholly outside it"
        )

    def rewrite(self, expr: Expr) -> Expr:
        """The filter with every address term translated (structure and directions kept)."""
        if isinstance(expr, AddrMatch):
            prefixes = tuple(q for p in expr.prefixes for q in self.term(p))
            # A term whose every address is shown as something else matches no flow.
            return AddrMatch(expr.direction, prefixes) if prefixes else Not(ALL)
        if isinstance(expr, RouterMatch):  # exporter addresses are pseudonymised the same way
            prefixes = tuple(q for p in expr.prefixes for q in self.term(p))
            return RouterMatch(prefixes) if prefixes else Not(ALL)
        if isinstance(expr, And):
            return And(tuple(self.rewrite(c) for c in expr.children))
        if isinstance(expr, Or):
            return Or(tuple(self.rewrite(c) for c in expr.children))
        if isinstance(expr, Not):
            return Not(self.rewrite(expr.child))
        return expr


def _hidden_message(p: Prefix) -> str:
    return (
        f"{p.text} lies in pseudonymised space: this tenant sees those addresses only as "
        "pseudonyms, so name them as they appear in results (revealing one needs the reveal "
        "right and is audited)"
    )
