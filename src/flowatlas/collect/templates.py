"""Template cache for NetFlow v9 and IPFIX.

Templates are keyed by (exporter address, protocol version, observation domain / source id,
template id): keying on the template id alone mixes exporters. The version is part of the key so
that one box speaking v9 and IPFIX (or a test replaying both from 127.0.0.1) cannot confuse the
two. A template unrefreshed for ``ttl`` seconds expires; a redefinition replaces the old one
(template ids are reused after an exporter reboots).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from flowatlas.protocols.elements import VARIABLE_LENGTH

TemplateKey = tuple[bytes, int, int, int]
"""(exporter 16-byte address, version 9|10, domain / source id, template id)."""

V9_SCOPE_BASE = 0x10000
"""v9 options scope field types (System, Interface, ...) are not IEs: they are stored shifted
above the IE number space so that they can never be read as one."""


@dataclass(frozen=True)
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

    def to_json(self) -> list[Any]:
        return [self.template_id, self.scope_count,
                [[f.element, f.length, f.enterprise] for f in self.fields]]

    @classmethod
    def from_json(cls, data: list[Any]) -> Template:
        tid, scope, fields = data
        return cls(int(tid), tuple(Field(int(e), int(n), int(p)) for e, n, p in fields), int(scope))


class TemplateCache:
    """Templates by key with their last refresh time (seconds, the collector's clock)."""

    def __init__(self, ttl: float = 7200.0, max_templates: int = 65536) -> None:
        self.ttl = ttl
        self.max_templates = max_templates
        self._templates: dict[TemplateKey, tuple[Template, float]] = {}
        self.changed = False

    def __len__(self) -> int:
        return len(self._templates)

    def get(self, key: TemplateKey) -> Template | None:
        hit = self._templates.get(key)
        return hit[0] if hit else None

    def put(self, key: TemplateKey, template: Template, now: float) -> bool:
        """Store or refresh; returns True when the definition is new or changed."""
        old = self._templates.get(key)
        if old is None and len(self._templates) >= self.max_templates:
            return False  # a hostile exporter must not grow memory without bound
        self._templates[key] = (template, now)
        new = old is None or (old[0] is not template and old[0] != template)
        self.changed = self.changed or new
        return new

    def withdraw(self, key: TemplateKey) -> None:
        if self._templates.pop(key, None) is not None:
            self.changed = True

    def withdraw_all(self, exporter: bytes, version: int, domain: int) -> None:
        for key in [k for k in self._templates if k[:3] == (exporter, version, domain)]:
            del self._templates[key]
            self.changed = True

    def count_for(self, exporter: bytes) -> int:
        return sum(1 for k in self._templates if k[0] == exporter)

    def expire(self, now: float) -> int:
        old = [k for k, (_, t) in self._templates.items() if now - t > self.ttl]
        for key in old:
            del self._templates[key]
        if old:
            self.changed = True
        return len(old)

    def to_json(self) -> list[Any]:
        return [[k[0].hex(), k[1], k[2], k[3], t, tpl.to_json()]
                for k, (tpl, t) in self._templates.items()]

    def load_json(self, data: list[Any], now: float) -> None:
        for exporter, version, domain, tid, t, tpl in data:
            if now - float(t) <= self.ttl:
                key = (bytes.fromhex(exporter), int(version), int(domain), int(tid))
                self._templates[key] = (Template.from_json(tpl), float(t))
