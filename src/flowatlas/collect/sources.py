"""What the decoder needs to know about exporters: a registered source, and how to look one up.

The registry itself (which addresses may send flows, as which source, on what basis) is
governance data kept in the control plane: ``flowatlas.governance.sources.SourceRegistry``
implements :class:`SourceLookup`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

BASES = ("contract", "consent", "public-interest", "research", "internal", "other")


class SourceError(ValueError):
    pass


@dataclass(frozen=True)
class Source:
    prefix: str
    source_id: int
    partner: str
    sampling: int | None
    """Overrides whatever rate the exporter announces (None: trust the exporter)."""
    basis: str
    added_at: float
    low: bytes = b""
    high: bytes = b""

    @property
    def width(self) -> int:
        return int.from_bytes(self.high, "big") - int.from_bytes(self.low, "big")


class SourceLookup(Protocol):
    def lookup(self, exporter: bytes) -> Source | None:
        """The most specific registered source containing the 16-byte ``exporter``."""
        ...
