"""Data sets that arrived before their template, held briefly instead of being lost.

Bounded in age, in sets per template and in bytes overall; what falls out is counted as
"unknown template" by the caller.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from flowatlas.collect.templates import TemplateKey


@dataclass(frozen=True)
class PendingSet:
    received: float
    export_us: int
    uptime_ms: int | None
    data: bytes
    """The set's records only (no set header)."""


class PendingBuffer:
    def __init__(self, max_age: float = 10.0, max_bytes: int = 8 << 20,
                 max_sets_per_key: int = 256) -> None:
        self.max_age = max_age
        self.max_bytes = max_bytes
        self.max_sets_per_key = max_sets_per_key
        self._sets: dict[TemplateKey, deque[PendingSet]] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return sum(len(q) for q in self._sets.values())

    def add(self, key: TemplateKey, item: PendingSet) -> list[TemplateKey]:
        """Hold ``item``; returns the keys of the sets pushed out to make room."""
        dropped: list[TemplateKey] = []
        if self.max_age <= 0 or len(item.data) > self.max_bytes:
            return [key]
        q = self._sets.setdefault(key, deque())
        if len(q) >= self.max_sets_per_key:
            self.bytes -= len(q.popleft().data)
            dropped.append(key)
        q.append(item)
        self.bytes += len(item.data)
        while self.bytes > self.max_bytes:
            oldest = min(self._sets, key=lambda k: self._sets[k][0].received)
            self._pop(oldest)
            dropped.append(oldest)
        return dropped

    def _pop(self, key: TemplateKey) -> PendingSet:
        q = self._sets[key]
        item = q.popleft()
        self.bytes -= len(item.data)
        if not q:
            del self._sets[key]
        return item

    def take(self, key: TemplateKey) -> list[PendingSet]:
        q = self._sets.pop(key, None)
        if not q:
            return []
        self.bytes -= sum(len(i.data) for i in q)
        return list(q)

    def expire(self, now: float) -> list[TemplateKey]:
        """Drop sets older than ``max_age``; returns one key per dropped set."""
        dropped: list[TemplateKey] = []
        for key in list(self._sets):
            q = self._sets[key]
            while q and now - q[0].received > self.max_age:
                self._pop(key)
                dropped.append(key)
                if key not in self._sets:
                    break
        return dropped
