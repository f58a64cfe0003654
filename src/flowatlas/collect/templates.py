"""Template cache for NetFlow v9 and IPFIX.

Templates are keyed by (exporter address, protocol version, observation domain / source id,
template id): keying on the template id alone mixes exporters. The version is part of the key so
that one box speaking v9 and IPFIX (or a test replaying both from 127.0.0.1) cannot confuse the
two. A template unrefreshed for ``ttl`` seconds expires; a redefinition replaces the old one
(template ids are reused after an exporter reboots).

Memory is bounded in bytes, per exporter and in total (collect/bounded.py): each template
costs its estimated footprint (:attr:`Template.footprint`), an exporter over its share loses its
own least recently refreshed templates, and a full cache takes room from the exporter holding
the most, so one exporter's flood never evicts another's templates.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from flowatlas.collect.bounded import OwnedLRU
from flowatlas.protocols.elements import VARIABLE_LENGTH

TemplateKey = tuple[bytes, int, int, int]
"""(exporter 16-byte address, version 9|10, domain / source id, template id)."""

V9_SCOPE_BASE = 0x10000
"""v9 options scope field types (System, Interface, ...) are not IEs: they are stored shifted
above the IE number space so that they can never be read as one."""


TEMPLATE_BYTES = 4096
"""Footprint of a template apart from its fields: the object, its cached properties, the
decoder's record layout for it (a numpy dtype, about 1.4 KiB), the cache entry and key. Measured
with tracemalloc at about 3.4 KiB and rounded up; tests/test_collect_state.py checks that the
estimate stays above what is really allocated, and within 2.5x of it."""
FIELD_BYTES = 112
"""Per field, measured at 88-100: a slotted Field (56), its slot in the tuple (8), its element
id as an int object (28) when it is not a small cached int."""
DEFAULT_MAX_BYTES_PER_EXPORTER = 4 << 20
"""About 550 templates of 30 fields, or 70 of 500: far above what one real exporter sends."""
DEFAULT_MAX_BYTES = 128 << 20


@dataclass(frozen=True, slots=True)
class Field:
    element: int
    length: int
    enterprise: int = 0

    @property
    def variable(self) -> bool:
        return self.length == VARIABLE_LENGTH


@dataclass(frozen=True)
class Template:
    template_id: int
    fields: tuple[Field, ...]
    scope_count: int = 0
    """Number of leading scope fields; > 0 marks an options template."""

    @property
    def is_options(self) -> bool:
        return self.scope_count > 0

    # Cached: asked once per data set on the hot path.
    @cached_property
    def variable(self) -> bool:
        return any(f.variable for f in self.fields)

    @cached_property
    def fixed_length(self) -> int:
        """Record length of a fixed-length data template; 0 for options, variable or empty."""
        if self.scope_count or self.variable:
            return 0
        return self.min_record_length

    @cached_property
    def min_record_length(self) -> int:
        """Smallest possible record: fixed fields plus one length byte per variable field."""
        return sum(1 if f.variable else f.length for f in self.fields)

    @cached_property
    def footprint(self) -> int:
        """Estimated bytes this template holds while cached (see TEMPLATE_BYTES)."""
        return TEMPLATE_BYTES + FIELD_BYTES * len(self.fields)

    @cached_property
    def layouts(self) -> dict[Any, Any]:
        """The record decoder's layouts for this template (collect/records.py), kept here so
        that they live and die with the template instead of pinning evicted ones."""
        return {}

    def to_json(self) -> list[Any]:
        return [self.template_id, self.scope_count,
                [[f.element, f.length, f.enterprise] for f in self.fields]]

    @classmethod
    def from_json(cls, data: list[Any]) -> Template:
        tid, scope, fields = data
        return cls(int(tid), tuple(Field(int(e), int(n), int(p)) for e, n, p in fields), int(scope))


class TemplateCache:
    """Templates by key with their last refresh time (seconds, the collector's clock), bounded
    in bytes per exporter (``max_bytes_per_exporter``) and in total (``max_bytes``)."""

    def __init__(self, ttl: float = 7200.0, *,
                 max_bytes_per_exporter: int = DEFAULT_MAX_BYTES_PER_EXPORTER,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.ttl = ttl
        self._templates: OwnedLRU[TemplateKey, tuple[Template, float]] = OwnedLRU(
            max_bytes_per_exporter, max_bytes)
        self.changed = False

    def __len__(self) -> int:
        return len(self._templates)

    @property
    def total_bytes(self) -> int:
        return self._templates.cost

    @property
    def max_bytes(self) -> int:
        return self._templates.total

    @property
    def max_bytes_per_exporter(self) -> int:
        return self._templates.per_owner

    def get(self, key: TemplateKey) -> Template | None:
        hit = self._templates.get(key)
        return hit[0] if hit else None

    def put(self, key: TemplateKey, template: Template, now: float) -> bool:
        """Store or refresh; returns True when the definition is new or changed (False also
        when a template alone is over the per-exporter cap: it is not stored, and counted)."""
        old = self._templates.get(key)
        new = old is None or (old[0] is not template and old[0] != template)
        if self._templates.put(key, (template, now), template.footprint) is None:
            self.changed = self.changed or old is not None
            return False
        self.changed = self.changed or new
        return new

    def withdraw(self, key: TemplateKey) -> None:
        if self._templates.pop(key) is not None:
            self.changed = True

    def withdraw_all(self, exporter: bytes, version: int, domain: int) -> None:
        for key in self._templates.keys_of(exporter):
            if key[1:3] == (version, domain):
                self._templates.pop(key)
                self.changed = True

    def count_for(self, exporter: bytes) -> int:
        return self._templates.count_of(exporter)

    def bytes_for(self, exporter: bytes) -> int:
        return self._templates.cost_of(exporter)

    def evicted_for(self, exporter: bytes) -> int:
        """Templates of ``exporter`` pushed out for room (or refused as too big) so far."""
        return self._templates.evicted[exporter] + self._templates.refused[exporter]

    def expire(self, now: float) -> int:
        old = [k for k, (_, t) in self._templates.items() if now - t > self.ttl]
        for key in old:
            self._templates.pop(key)
        if old:
            self.changed = True
        return len(old)

    def to_json(self) -> list[Any]:
        return [[k[0].hex(), k[1], k[2], k[3], t, tpl.to_json()]
                for k, (tpl, t) in self._templates.items()]

    def load_json(self, data: list[Any], now: float) -> None:
        """Templates saved by :meth:`to_json`, oldest refresh first (so the caps keep the
        most recently refreshed)."""
        for exporter, version, domain, tid, t, tpl in sorted(data, key=lambda row: row[4]):
            if now - float(t) <= self.ttl:
                key = (bytes.fromhex(exporter), int(version), int(domain), int(tid))
                template = Template.from_json(tpl)
                self._templates.put(key, (template, float(t)), template.footprint)
