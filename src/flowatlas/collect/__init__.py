"""Flow collection: decode NetFlow v5/v9, IPFIX and sFlow v5 datagrams into the canonical schema.

The pure API is :class:`flowatlas.collect.datagram.Decoder`; :mod:`flowatlas.collect.server`
adds the UDP sockets and the store.
"""

from flowatlas.collect.datagram import Decoder
from flowatlas.collect.sources import Source, SourceLookup

# The registry of exporters is governance data: flowatlas.governance.sources.SourceRegistry.
__all__ = ["Decoder", "Source", "SourceLookup"]
