"""The filter language: what parses, what it means, and how errors point at the problem."""

from __future__ import annotations

import pytest

from flowatlas.addresses import pack
from flowatlas.query.expr import ALL, AddrMatch, And, Direction, FlagsMatch, Not, NumMatch, Op, Or
from flowatlas.query.filter import FilterSyntaxError, parse_filter


def test_empty_and_any_match_everything() -> None:
    assert parse_filter("") is ALL
    assert parse_filter(None) is ALL
    assert parse_filter("any") is ALL


@pytest.mark.parametrize(
    ("text", "direction"),
    [("ip 10.0.0.1", Direction.ANY), ("host 10.0.0.1", Direction.ANY),
     ("src ip 10.0.0.1", Direction.SRC), ("dst host 10.0.0.1", Direction.DST)],
)
def test_address_terms(text: str, direction: Direction) -> None:
    expr = parse_filter(text)
    assert isinstance(expr, AddrMatch)
    assert expr.direction is direction
    assert expr.prefixes[0].low == expr.prefixes[0].high == pack("10.0.0.1")


def test_ipv6_and_nets() -> None:
    expr = parse_filter("src net 2001:db8::/32 or dst net 10.0.0.0/8")
    assert isinstance(expr, Or)
    v6, v4 = expr.children
    assert isinstance(v6, AddrMatch) and isinstance(v4, AddrMatch)
    assert v6.prefixes[0].low == pack("2001:db8::")
    assert v6.prefixes[0].high == pack("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")
    assert v4.prefixes[0].high == pack("10.255.255.255")


def test_lists_ports_protocols_and_sizes() -> None:
    expr = parse_filter("ip in [10.0.0.1, 10.0.0.2 ::1] and port in [80 443] and proto udp "
                        "and bytes > 1k and packets <= 2M and flags AS and src as 64500 "
                        "and in if 3")
    assert isinstance(expr, And)
    ips, ports, proto, size, pkts, flags, asn, iface = expr.children
    assert isinstance(ips, AddrMatch) and len(ips.prefixes) == 3
    assert ports == NumMatch("port", Direction.ANY, Op.IN, (80, 443))
    assert proto == NumMatch("proto", Direction.ANY, Op.EQ, (17,))
    assert size == NumMatch("bytes", Direction.ANY, Op.GT, (1000,))
    assert pkts == NumMatch("packets", Direction.ANY, Op.LE, (2_000_000,))
    assert flags == FlagsMatch(0x12)
    assert asn == NumMatch("as", Direction.SRC, Op.EQ, (64500,))
    assert iface == NumMatch("if", Direction.SRC, Op.EQ, (3,))


def test_precedence_not_binds_tighter_than_and_than_or() -> None:
    expr = parse_filter("not port 22 and proto tcp or proto udp")
    assert isinstance(expr, Or)
    left = expr.children[0]
    assert isinstance(left, And) and isinstance(left.children[0], Not)
    grouped = parse_filter("not (port 22 and (proto tcp or proto udp))")
    assert isinstance(grouped, Not) and isinstance(grouped.child, And)
    assert parse_filter("! port 22 && proto tcp || proto udp") == expr


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("ip 1.2.3", 4, "expected an IP address or prefix, found '1.2.3'"),
        ("ip", 3, "expected an IP address or prefix, found the end of the filter"),
        ("src port 80 and", 16, "expected a filter term"),
        ("port 99999", 6, "port 99999 is out of range"),
        ("proto tcpx", 7, "expected a protocol name"),
        ("(ip 10.0.0.1", 13, "expected ')'"),
        ("ip 10.0.0.1 port 80", 13, "expected 'and', 'or' or the end of the filter"),
        ("bytes > lots", 9, "expected a number for bytes"),
        ("flags QQ", 7, "expected TCP flag letters"),
        ("src proto tcp", 5, "expected ip, host, net, port or as after 'src'/'dst'"),
        ("port in [80 443", 16, "expected a number or ']'"),
        ("ip 10.0.0.1 ; drop table flows", 13, "unexpected character ';'"),
        ("ip 10.0.0.1' OR 1=1 --", 12, "unexpected character"),
    ],
)
def test_errors_name_the_position_and_what_was_expected(text: str, column: int, fragment: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter(text)
    assert info.value.position + 1 == column, str(info.value)
    assert fragment in str(info.value)
    assert f"column {column}" in str(info.value)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(FilterSyntaxError, match="nests too deeply"):
        parse_filter("(" * 500 + "any" + ")" * 500)
