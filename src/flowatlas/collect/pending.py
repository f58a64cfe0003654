"""Data sets that arrived before their template, held briefly instead of being lost.

Bounded in age, in sets per template and in bytes per exporter and overall (collect/bounded.py:
an exporter over its share loses its own oldest sets, a full buffer takes room from the exporter
holding the most); what falls out is counted as "unknown template" by the caller.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import count

from flowatlas.collect.bounded import OwnedLRU
from flowatlas.collect.templates import TemplateKey

SET_OVERHEAD = 160
"""Bytes a held set costs beyond its payload: the PendingSet, the bytes object's header, the
deque slot and its entry in the bounded table."""
DEFAULT_MAX_BYTES_PER_EXPORTER = 2 << 20
DEFAULT_MAX_BYTES = 16 << 20


@dataclass(frozen=True)
class PendingSet:
    received: float
    export_us: int
    uptime_ms: int | None
    data: bytes
    """The set's records only (no set header)."""

    @property
    def cost(self) -> int:
        return len(self.data) + SET_OVERHEAD


_Entry = tuple[bytes, TemplateKey, int]
"""(exporter, template key, serial): one held set in the bounded table, oldest first."""


class PendingBuffer:
    def __init__(self, max_age: float = 10.0, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_sets_per_key: int = 256, *,
                 max_bytes_per_exporter: int = DEFAULT_MAX_BYTES_PER_EXPORTER) -> None:
        self.max_age = max_age
        self.max_sets_per_key = max_sets_per_key
        self._held: OwnedLRU[_Entry, PendingSet] = OwnedLRU(max_bytes_per_exporter, max_bytes)
        self._sets: dict[TemplateKey, deque[_Entry]] = {}
        self._serial = count()

    @property
    def max_bytes(self) -> int:
        return self._held.total

    @property
    def max_bytes_per_exporter(self) -> int:
        return self._held.per_owner

    @property
    def total_bytes(self) -> int:
        return self._held.cost

    def __len__(self) -> int:
        return len(self._held)

    def bytes_for(self, exporter: bytes) -> int:
        return self._held.cost_of(exporter)

    def add(self, key: TemplateKey, item: PendingSet) -> list[TemplateKey]:
        """Hold ``item``; returns the keys of the sets pushed out to make room (``key`` itself
        when ``item`` cannot be held at all)."""
        if self.max_age <= 0:
            return [key]
        dropped: list[TemplateKey] = []
        q = self._sets.setdefault(key, deque())
        if len(q) >= self.max_sets_per_key:
            self._held.pop(q.popleft())
            dropped.append(key)
        entry = (key[0], key, next(self._serial))
        evicted = self._held.put(entry, item, item.cost)
        if evicted is None:
            dropped.append(key)
        else:
            q.append(entry)
            for (_, old_key, _), _ in evicted:
                # Oldest of its exporter, so the oldest of its key: the head of its queue.
                self._sets[old_key].popleft()
                dropped.append(old_key)
        for k in set(dropped):
            if not self._sets.get(k, True):
                del self._sets[k]
        return dropped

    def take(self, key: TemplateKey) -> list[PendingSet]:
        q = self._sets.pop(key, None)
        if not q:
            return []
        out = []
        for entry in q:
            item = self._held.pop(entry)
            if item is not None:
                out.append(item)
        return out

    def expire(self, now: float) -> list[TemplateKey]:
        """Drop sets older than ``max_age``; returns one key per dropped set."""
        dropped: list[TemplateKey] = []
        for key in list(self._sets):
            q = self._sets[key]
            while q:
                item = self._held.get(q[0])
                if item is not None and now - item.received <= self.max_age:
                    break
                self._held.pop(q.popleft())
                dropped.append(key)
            if not q:
                del self._sets[key]
        return dropped
