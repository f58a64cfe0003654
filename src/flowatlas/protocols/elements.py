"""NetFlow v9 field types and IPFIX information elements (RFC 3954 §8, RFC 7012, IANA registry).

For the elements flowatlas understands, v9 and IPFIX share the numbers. One table serves the
decoders and the encoders so that the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class IE(IntEnum):
    OCTET_DELTA_COUNT = 1
    PACKET_DELTA_COUNT = 2
    PROTOCOL_IDENTIFIER = 4
    TCP_CONTROL_BITS = 6
    SOURCE_TRANSPORT_PORT = 7
    SOURCE_IPV4_ADDRESS = 8
    INGRESS_INTERFACE = 10
    DESTINATION_TRANSPORT_PORT = 11
    DESTINATION_IPV4_ADDRESS = 12
    EGRESS_INTERFACE = 14
    BGP_SOURCE_AS_NUMBER = 16
    BGP_DESTINATION_AS_NUMBER = 17
    FLOW_END_SYS_UP_TIME = 21
    FLOW_START_SYS_UP_TIME = 22
    ICMP_TYPE_CODE_IPV4 = 32
    SOURCE_IPV6_ADDRESS = 27
    DESTINATION_IPV6_ADDRESS = 28
    SAMPLING_INTERVAL = 34
    SAMPLING_ALGORITHM = 35
    SAMPLER_ID = 48
    SAMPLER_MODE = 49
    SAMPLER_RANDOM_INTERVAL = 50
    OCTET_TOTAL_COUNT = 85
    PACKET_TOTAL_COUNT = 86
    EXPORTER_IPV4_ADDRESS = 130
    EXPORTER_IPV6_ADDRESS = 131
    ICMP_TYPE_CODE_IPV6 = 139
    FLOW_START_SECONDS = 150
    FLOW_END_SECONDS = 151
    FLOW_START_MILLISECONDS = 152
    FLOW_END_MILLISECONDS = 153
    FLOW_START_MICROSECONDS = 154
    FLOW_END_MICROSECONDS = 155
    FLOW_START_NANOSECONDS = 156
    FLOW_END_NANOSECONDS = 157
    SYSTEM_INIT_TIME_MILLISECONDS = 160
    SELECTOR_ID = 302
    SAMPLING_PACKET_INTERVAL = 305
    SAMPLING_PACKET_SPACE = 306
    SAMPLING_SIZE = 309
    SAMPLING_POPULATION = 310


VARIABLE_LENGTH = 65535
"""A template field length of 65535 announces a variable-length field (RFC 7011 §7)."""

ENTERPRISE_BIT = 0x8000
"""IPFIX: the top bit of a field id says a 4-byte enterprise number follows (RFC 7011 §3.2)."""


@dataclass(frozen=True)
class Mapping:
    """How one element lands in the canonical schema."""

    element: IE
    column: str
    default_length: int


# Elements carried straight into a canonical column (integers, big-endian, reduced-size allowed).
CANONICAL: tuple[Mapping, ...] = (
    Mapping(IE.OCTET_DELTA_COUNT, "bytes", 8),
    Mapping(IE.PACKET_DELTA_COUNT, "packets", 8),
    Mapping(IE.PROTOCOL_IDENTIFIER, "protocol", 1),
    Mapping(IE.TCP_CONTROL_BITS, "tcp_flags", 1),
    Mapping(IE.SOURCE_TRANSPORT_PORT, "src_port", 2),
    Mapping(IE.DESTINATION_TRANSPORT_PORT, "dst_port", 2),
    Mapping(IE.INGRESS_INTERFACE, "in_if", 4),
    Mapping(IE.EGRESS_INTERFACE, "out_if", 4),
    Mapping(IE.BGP_SOURCE_AS_NUMBER, "src_as", 4),
    Mapping(IE.BGP_DESTINATION_AS_NUMBER, "dst_as", 4),
)

ADDRESS_ELEMENTS: dict[IE, tuple[str, int]] = {
    IE.SOURCE_IPV4_ADDRESS: ("src_addr", 4),
    IE.DESTINATION_IPV4_ADDRESS: ("dst_addr", 4),
    IE.SOURCE_IPV6_ADDRESS: ("src_addr", 16),
    IE.DESTINATION_IPV6_ADDRESS: ("dst_addr", 16),
}

ICMP_ELEMENTS = (IE.ICMP_TYPE_CODE_IPV4, IE.ICMP_TYPE_CODE_IPV6)
"""type * 256 + code; stored in dst_port of ICMP records, where NetFlow v5 and nfcapd put it."""

SAMPLING_RATE_ELEMENTS = (IE.SAMPLING_INTERVAL, IE.SAMPLING_PACKET_INTERVAL)
SAMPLER_ID_ELEMENTS = (IE.SAMPLER_ID, IE.SELECTOR_ID)
