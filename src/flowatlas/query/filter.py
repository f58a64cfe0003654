"""The nfdump-style filter language, parsed into the expression tree of query/expr.py.

Grammar (the everyday subset of nfdump(1))::

    expr    := and ( ("or" | "||") and )*
    and     := unary ( ("and" | "&&") unary )*
    unary   := ("not" | "!") unary | "(" expr ")" | term
    term    := [src|dst] (ip|host) ADDRS | [src|dst] net PREFIXES | [src|dst] port NUMS
             | [src|dst] as NUMS | proto PROTOS | bytes CMP | packets CMP | flags LETTERS
             | (in|out) if NUMS | router ip ADDRS | inet | inet6 | ipv4 | ipv6
             | (duration|pps|bps|bpp) CMP | (icmp-type|icmp-code) NUMS | [src|dst] ipset FILE
             | any
    ADDRS   := ADDRESS | "in" "[" ADDRESS ([","] ADDRESS)* "]"
    NUMS    := [OP] NUMBER | "in" "[" NUMBER ([","] NUMBER)* "]"
    OP      := = == != < <= > >= eq ne lt le gt ge

Numbers take k/M/G suffixes (x1000, as nfdump does). Errors name the column and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from flowatlas.addresses import AddressError, Prefix, parse_prefix
from flowatlas.query.expr import (
    ALL,
    DERIVED,
    AddrMatch,
    And,
    DerivedMatch,
    Direction,
    Expr,
    FlagsMatch,
    IcmpMatch,
    Not,
    NumMatch,
    Op,
    Or,
    RouterMatch,
)

PROTOCOLS = {
    "icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "ipv6": 41, "rsvp": 46, "gre": 47, "esp": 50,
    "ah": 51, "icmp6": 58, "ipv6-icmp": 58, "ospf": 89, "pim": 103, "sctp": 132,
}
TCP_FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40,
             "C": 0x80, "X": 0x3F}
_OPS = {"=": Op.EQ, "==": Op.EQ, "eq": Op.EQ, "!=": Op.NE, "ne": Op.NE, "<": Op.LT, "lt": Op.LT,
        "<=": Op.LE, "le": Op.LE, ">": Op.GT, "gt": Op.GT, ">=": Op.GE, "ge": Op.GE}
_SUFFIX = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
_LIMITS = {"port": 65_535, "as": 4_294_967_295, "if": 4_294_967_295, "proto": 255,
           "bytes": 2**64 - 1, "packets": 2**64 - 1, "duration": 2**63 - 1, "pps": 2**63 - 1,
           "bps": 2**63 - 1, "bpp": 2**63 - 1, "icmp-type": 255, "icmp-code": 255}
# The IPv4 space as stored (IPv4-mapped IPv6, ::ffff:0:0/96).
_IPV4 = parse_prefix("0.0.0.0/0")
# nfdump terms for fields the canonical schema does not carry: an error naming why, not a guess.
_NOT_STORED = {
    "tos": "flowatlas does not store the type of service (ToS/DSCP): the flow schema has no such field",
    "next": "flowatlas does not store the next hop: the flow schema has no next-hop field",
    "bgpnext": "flowatlas does not store the BGP next hop: the flow schema has no such field",
}
_TERMS = ("a filter term (ip, net, port, proto, bytes, packets, flags, as, duration, bps, pps, "
          "bpp, inet, inet6, router ip, icmp-type, icmp-code)")
_MAX_LIST = 10_000
_MAX_DEPTH = 100
T = TypeVar("T")

_TOKEN = re.compile(
    r"\s*(?:(?P<punct>\(|\)|\[|\]|,|&&|\|\||==|!=|<=|>=|<|>|=|!)|(?P<word>[A-Za-z0-9_.:/\-~]+)"
    r"|\"(?P<quoted>[^\"]*)\")"
)
MAX_IPSET = 50_000
"""Addresses and prefixes one ``ipset FILE`` may hold (each becomes a bound value)."""


class FilterSyntaxError(ValueError):
    """A filter that does not parse; ``position`` is the 0-based offset of the problem."""

    def __init__(self, text: str, position: int, message: str) -> None:
        self.text = text
        self.position = position
        self.reason = message
        super().__init__(f"filter error at column {position + 1}: {message}")

    def caret(self) -> str:
        return f"{self.text}\n{' ' * self.position}^"


@dataclass(frozen=True)
class Token:
    text: str
    pos: int
    kind: str  # "punct", "word" or "end"

    @property
    def low(self) -> str:
        return self.text.lower()

    def describe(self) -> str:
        return "the end of the filter" if self.kind == "end" else repr(self.text)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            bad = pos + (len(text[pos:]) - len(text[pos:].lstrip()))
            raise FilterSyntaxError(text, bad, f"unexpected character {text[bad]!r}")
        group = "punct" if m.group("punct") else "word" if m.group("word") is not None else "quoted"
        # A quoted word (a file name with spaces) is a word; its position is the opening quote.
        start = m.start(group) - (group == "quoted")
        tokens.append(Token(m.group(group), start, "punct" if group == "punct" else "word"))
        pos = m.end()
    tokens.append(Token("", len(text), "end"))
    return tokens


class _Parser:
    def __init__(self, text: str, read_files: bool = False) -> None:
        self.text = text
        self.read_files = read_files
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    # -- helpers ----------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        t = self.tokens[self.i]
        if t.kind != "end":
            self.i += 1
        return t

    def error(self, expected: str, tok: Token | None = None) -> FilterSyntaxError:
        t = tok or self.tok
        return FilterSyntaxError(self.text, t.pos, f"expected {expected}, found {t.describe()}")

    def accept(self, *words: str) -> Token | None:
        if self.tok.low in words and self.tok.kind != "end":
            return self.advance()
        return None

    def expect(self, word: str, expected: str) -> Token:
        if self.tok.low != word:
            raise self.error(expected)
        return self.advance()

    # -- grammar ----------------------------------------------------------------------------

    def parse(self) -> Expr:
        if self.tok.kind == "end":
            return ALL
        expr = self.parse_or()
        if self.tok.kind != "end":
            raise self.error("'and', 'or' or the end of the filter")
        return expr

    def parse_or(self) -> Expr:
        parts = [self.parse_and()]
        while self.accept("or", "||"):
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def parse_and(self) -> Expr:
        parts = [self.parse_unary()]
        while self.accept("and", "&&"):
            parts.append(self.parse_unary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def parse_unary(self) -> Expr:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise FilterSyntaxError(self.text, self.tok.pos, "filter nests too deeply")
        try:
            if self.accept("not", "!"):
                return Not(self.parse_unary())
            if self.accept("("):
                inner = self.parse_or()
                if not self.accept(")"):
                    raise self.error("')'")
                return inner
            return self.parse_term()
        finally:
            self.depth -= 1

    def parse_term(self) -> Expr:
        start = self.tok
        if start.kind == "end":
            raise self.error(_TERMS)
        if self.accept("any"):
            return ALL
        if start.low in _NOT_STORED:
            raise FilterSyntaxError(self.text, start.pos, _NOT_STORED[start.low])
        if self.accept("inet", "ipv4"):
            return And((AddrMatch(Direction.SRC, (_IPV4,)), AddrMatch(Direction.DST, (_IPV4,))))
        if self.accept("inet6", "ipv6"):
            # nfdump: both endpoints IPv6; a record mixing families matches neither term.
            return And((Not(AddrMatch(Direction.SRC, (_IPV4,))),
                        Not(AddrMatch(Direction.DST, (_IPV4,)))))
        if start.low in DERIVED:
            self.advance()
            op, values = self.op_values(start.low, allow_list=False)
            return DerivedMatch(start.low, op, values[0])
        if start.low in ("icmp-type", "icmp-code"):
            self.advance()
            return IcmpMatch(start.low[5:], *self.op_values(start.low))
        if start.low == "router":
            self.advance()
            if not self.accept("ip"):
                raise self.error("'ip' after 'router'")
            return RouterMatch(self.addresses())
        if start.low in ("in", "out") and self.tokens[self.i + 1].low == "if":
            self.advance()
            self.advance()
            direction = Direction.SRC if start.low == "in" else Direction.DST
            return self.numeric("if", direction)
        direction = Direction.ANY
        if self.accept("src"):
            direction = Direction.SRC
        elif self.accept("dst"):
            direction = Direction.DST
        word = self.tok
        key = word.low
        if key in ("ip", "host"):
            self.advance()
            return AddrMatch(direction, self.addresses())
        if key == "ipset":
            self.advance()
            return AddrMatch(direction, self.ipset(word, self.advance()))
        if key == "net":
            self.advance()
            return AddrMatch(direction, self.addresses())
        if key in ("port", "as"):
            self.advance()
            return self.numeric(key, direction)
        if direction is not Direction.ANY:
            if key in _NOT_STORED:
                raise FilterSyntaxError(self.text, word.pos, _NOT_STORED[key])
            raise self.error("ip, host, net, port or as after 'src'/'dst'", word)
        if key == "proto":
            self.advance()
            return self.protocols()
        if key in ("bytes", "packets"):
            self.advance()
            return self.numeric(key, Direction.ANY, allow_list=False)
        if key == "flags":
            self.advance()
            return self.flags()
        raise self.error(_TERMS, word)

    def ipset(self, keyword: Token, tok: Token) -> tuple[Prefix, ...]:
        if tok.kind != "word":
            raise self.error("a file of addresses after 'ipset'", tok)
        if not self.read_files:
            raise FilterSyntaxError(self.text, keyword.pos,
                                    "ipset FILE reads a file, which only the command line may do")
        try:
            return read_ipset(tok.text)
        except OSError as exc:
            raise FilterSyntaxError(self.text, tok.pos,
                                    f"cannot read ipset {tok.text!r}: {exc.strerror}") from None
        except ValueError as exc:
            raise FilterSyntaxError(self.text, tok.pos, f"ipset {exc}") from None

    def addresses(self) -> tuple[Prefix, ...]:
        if self.accept("in"):
            return tuple(self.list_of(self.prefix, "an IP address or prefix"))
        return (self.prefix(self.advance()),)

    def prefix(self, tok: Token) -> Prefix:
        if tok.kind != "word":
            raise self.error("an IP address or prefix", tok)
        try:
            return parse_prefix(tok.text)
        except AddressError:
            raise FilterSyntaxError(
                self.text, tok.pos, f"expected an IP address or prefix, found {tok.text!r}"
            ) from None

    def list_of(self, item: Callable[[Token], T], what: str) -> list[T]:
        if not self.accept("["):
            raise self.error("'[' to start a list")
        values: list[T] = []
        while True:
            if self.accept("]"):
                break
            if values:
                self.accept(",")
            if self.tok.kind == "end":
                raise self.error(f"{what} or ']'")
            values.append(item(self.advance()))
            if len(values) > _MAX_LIST:
                raise FilterSyntaxError(self.text, self.tok.pos, f"list longer than {_MAX_LIST}")
        if not values:
            raise self.error(what)
        return values

    def number(self, tok: Token, attribute: str) -> int:
        m = re.fullmatch(r"(\d+)([kKmMgG]?)", tok.text) if tok.kind == "word" else None
        if not m:
            raise FilterSyntaxError(self.text, tok.pos, f"expected a number for {attribute}, "
                                    f"found {tok.describe()}")
        value = int(m.group(1)) * _SUFFIX.get(m.group(2).lower(), 1)
        if value > _LIMITS[attribute]:
            raise FilterSyntaxError(self.text, tok.pos,
                                    f"{attribute} {value} is out of range (max {_LIMITS[attribute]})")
        return value

    def numeric(self, attribute: str, direction: Direction, allow_list: bool = True) -> NumMatch:
        op, values = self.op_values(attribute, allow_list)
        return NumMatch(attribute, direction, op, values)

    def op_values(self, attribute: str, allow_list: bool = True) -> tuple[Op, tuple[int, ...]]:
        """``[OP] NUMBER`` or ``in [NUMBER ...]``."""
        if allow_list and self.accept("in"):
            return Op.IN, tuple(self.list_of(lambda t: self.number(t, attribute), "a number"))
        op = Op.EQ
        if self.tok.low in _OPS:
            op = _OPS[self.advance().low]
        return op, (self.number(self.advance(), attribute),)

    def protocols(self) -> NumMatch:
        def proto(tok: Token) -> int:
            if tok.low in PROTOCOLS:
                return PROTOCOLS[tok.low]
            if tok.kind == "word" and tok.text.isdigit():
                return self.number(tok, "proto")
            names = ", ".join(sorted(PROTOCOLS))
            raise FilterSyntaxError(self.text, tok.pos, f"expected a protocol name ({names}) "
                                    f"or number, found {tok.describe()}")

        if self.accept("in"):
            values = self.list_of(proto, "a protocol")
            return NumMatch("proto", Direction.ANY, Op.IN, tuple(values))
        return NumMatch("proto", Direction.ANY, Op.EQ, (proto(self.advance()),))

    def flags(self) -> FlagsMatch:
        tok = self.advance()
        letters = tok.text.upper() if tok.kind == "word" else ""
        if not letters or any(c not in TCP_FLAGS for c in letters):
            raise FilterSyntaxError(self.text, tok.pos, "expected TCP flag letters from "
                                    f"UAPRSFECX, found {tok.describe()}")
        mask = 0
        for c in letters:
            mask |= TCP_FLAGS[c]
        return FlagsMatch(mask)


def parse_filter(text: str | None, read_files: bool = False) -> Expr:
    """Parse a filter; an empty filter matches every flow.

    ``ipset FILE`` reads a file, so it is refused unless ``read_files`` (the command line says
    so; a filter that arrives over HTTP must not open server files).
    """
    if text is None:
        return ALL
    return _Parser(text, read_files).parse()


def read_ipset(path: str) -> tuple[Prefix, ...]:
    """Addresses and prefixes one per line (``#`` comments, blank lines; the text ``rwsetcat``
    prints); raises ValueError naming the file and line."""
    out: list[Prefix] = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                out.append(parse_prefix(text))
            except AddressError:
                raise ValueError(f"{path} line {number}: not an IP address or prefix: "
                                 f"{text!r}") from None
            if len(out) > MAX_IPSET:
                raise ValueError(f"{path}: more than {MAX_IPSET:,} addresses and prefixes")
    if not out:
        raise ValueError(f"{path}: no addresses or prefixes in it")
    return tuple(out)
