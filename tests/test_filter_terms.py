"""nfdump's computed, family, router and ICMP filter terms: parsing, errors, and results over a
store checked against a plain Python evaluation of each record."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flowfactory import random_flows

from flowatlas.addresses import is_ipv4, parse_prefix
from flowatlas.atlas import Atlas
from flowatlas.query.expr import DerivedMatch, IcmpMatch, Op, RouterMatch
from flowatlas.query.filter import FilterSyntaxError, parse_filter
from flowatlas.store import FlowStore


def test_terms_parse_to_their_nodes() -> None:
    assert parse_filter("duration > 1500") == DerivedMatch("duration", Op.GT, 1500)
    assert parse_filter("bps >= 2M") == DerivedMatch("bps", Op.GE, 2_000_000)
    assert parse_filter("pps 10k") == DerivedMatch("pps", Op.EQ, 10_000)
    assert parse_filter("bpp lt 64") == DerivedMatch("bpp", Op.LT, 64)
    assert parse_filter("icmp-type 8") == IcmpMatch("type", Op.EQ, (8,))
    assert parse_filter("icmp-code in [0 1]") == IcmpMatch("code", Op.IN, (0, 1))
    assert parse_filter("router ip 192.0.2.1") == RouterMatch((parse_prefix("192.0.2.1"),))
    assert parse_filter("ipv4") == parse_filter("inet")
    assert parse_filter("ipv6") == parse_filter("inet6")
    assert parse_filter("proto ipv6") != parse_filter("ipv6")  # protocol 41, not the family


@pytest.mark.parametrize(("text", "column", "fragment"), [
    ("tos 4", 1, "does not store the type of service"),
    ("proto tcp and src tos 4", 19, "does not store the type of service"),
    ("next ip 10.0.0.1", 1, "does not store the next hop"),
    ("bgpnext ip 10.0.0.1", 1, "BGP next hop"),
    ("router 10.0.0.1", 8, "expected 'ip' after 'router'"),
    ("router ip 10.0.0.300", 11, "expected an IP address or prefix"),
    ("duration > soon", 12, "expected a number for duration"),
    ("bps > 1x", 7, "expected a number for bps"),
    ("pps in [1 2]", 5, "expected a number for pps"),
    ("icmp-type 256", 11, "icmp-type 256 is out of range (max 255)"),
    ("inet6 and icmp-code", 20, "expected a number for icmp-code"),
    ("dst inet", 5, "ip, host, net, port or as after 'src'/'dst'"),
])
def test_errors_keep_their_caret(text: str, column: int, fragment: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter(text)
    assert info.value.position == column - 1, info.value
    assert fragment in str(info.value)
    assert info.value.caret().splitlines()[1] == " " * (column - 1) + "^"


@pytest.fixture(scope="module")
def flows_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("terms")
    table = random_flows(6_000, seed=5, days=1)
    # Mixed families, a second exporter, zero-length flows and ICMP type/code in the port.
    rows = table.to_pylist()
    for i, r in enumerate(rows):
        if i % 7 == 0:
            r["time_end"] = r["time_start"]
        if i % 11 == 0:
            r["exporter"] = parse_prefix("198.51.100.7").low
        if r["protocol"] == 1:
            r["dst_port"] = (i % 4) * 256 + i % 3
    store = FlowStore(path)
    store.append(table.from_pylist(rows, schema=table.schema))
    store.compact()
    return path


def _ms(r: dict[str, Any]) -> int:
    return (int(r["time_end"].timestamp() * 1000) - int(r["time_start"].timestamp() * 1000))


ORACLE: dict[str, Callable[[dict[str, Any]], bool]] = {
    "inet": lambda r: is_ipv4(r["src_addr"]) and is_ipv4(r["dst_addr"]),
    "inet6": lambda r: not is_ipv4(r["src_addr"]) and not is_ipv4(r["dst_addr"]),
    "duration > 30000": lambda r: _ms(r) > 30_000,
    "duration == 0": lambda r: _ms(r) == 0,
    "bpp > 2k": lambda r: r["bytes"] // r["packets"] > 2000,
    "pps >= 5": lambda r: _ms(r) > 0 and 1000 * r["packets"] // _ms(r) >= 5,
    "bps < 20k": lambda r: (8000 * r["bytes"] // _ms(r) if _ms(r) > 0 else 0) < 20_000,
    "icmp-type 2": lambda r: r["protocol"] in (1, 58) and r["dst_port"] >> 8 == 2,
    "icmp-code != 0": lambda r: r["protocol"] in (1, 58) and r["dst_port"] & 255 != 0,
    "router ip 198.51.100.7": lambda r: r["exporter"] == parse_prefix("198.51.100.7").low,
    "router ip in [198.51.100.0/24 192.0.2.1]": lambda r: True,
    "inet6 and not router ip 192.0.2.1": lambda r: (
        not is_ipv4(r["src_addr"]) and not is_ipv4(r["dst_addr"])
        and r["exporter"] != parse_prefix("192.0.2.1").low),
}


@pytest.mark.parametrize("text", sorted(ORACLE))
def test_terms_select_what_they_say(flows_store: Path, text: str) -> None:
    table = random_flows(6_000, seed=5, days=1)
    with Atlas(flows_store) as atlas:
        got = atlas.flows(atlas.select(text), limit=100_000)
    with Atlas(flows_store) as atlas:
        every = atlas.flows(atlas.select(None), limit=100_000).to_pylist()
    assert len(every) == table.num_rows
    want = sorted((r["time_start"], r["src_addr"], r["dst_addr"], r["src_port"])
                  for r in every if ORACLE[text](r))
    assert 0 < len(want) < len(every) or text.startswith("router ip in")
    assert sorted(zip(got["time_start"].to_pylist(), got["src_addr"].to_pylist(),
                      got["dst_addr"].to_pylist(), got["src_port"].to_pylist(),
                      strict=True)) == want
