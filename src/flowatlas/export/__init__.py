"""Export flows as real NetFlow v9 / IPFIX datagrams (encoder) and send them over UDP (sender)."""

from flowatlas.export.encoder import PROTOCOLS, Encoder
from flowatlas.export.sender import UdpSender, parse_target

__all__ = ["PROTOCOLS", "Encoder", "UdpSender", "parse_target"]
