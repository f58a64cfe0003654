"""ICMP type/code sent in icmpTypeCodeIPv4/IPv6 (IE 32/139) lands in dst_port as type*256+code."""

from __future__ import annotations

import struct

from collect_support import ipfix_message, ipfix_set, ipfix_template

from flowatlas.collect import Decoder

FIELDS = [(4, 1), (8, 4), (12, 4), (7, 2), (11, 2), (32, 2), (1, 4), (2, 4), (152, 8)]


def _record(proto: int, dport: int, icmp: int) -> bytes:
    return struct.pack("!B4s4sHHHIIQ", proto, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 0,
                       dport, icmp, 100, 1, 1_700_000_000_000)


def test_icmp_type_code_element_goes_to_dst_port() -> None:
    msg = ipfix_message([ipfix_set(2, ipfix_template(300, FIELDS)),
                         ipfix_set(300, _record(1, 0, 0x0301) + _record(6, 443, 0x0800)
                                   + _record(1, 0x0800, 0x0000))])
    table = Decoder().decode(msg, "192.0.2.1", 1_700_000_001.0)
    assert table is not None
    # ICMP: from the element; TCP: its port untouched; ICMP already in the port: kept.
    assert table["dst_port"].to_pylist() == [0x0301, 443, 0x0800]
