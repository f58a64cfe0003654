"""Per-exporter state bounded by cost, per exporter and in total, evicting least recently used.

Templates, data sets waiting for their template and sequence trackers are all keyed by tuples
whose first element is the exporter's 16-byte address. A hostile or broken exporter can send
any number of template ids, observation domains or unknown-template sets; what it makes the
collector hold must stay bounded, and its flood must never push out another exporter's state.
So every entry has a cost (bytes, or 1 for fixed-size state), each exporter may hold at most
``per_owner`` and all of them together at most ``total``:

- an exporter over its own share loses its own least recently used entries;
- when the total is over, the exporter holding the most loses its least recently used ones
  (a flood is by definition the biggest holder; an exporter within a fair share keeps its
  state while any other holds more).

Eviction counts are kept per exporter for the collector's status.
"""

from __future__ import annotations

import heapq
from collections import Counter, OrderedDict
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=tuple[Hashable, ...])
V = TypeVar("V")


class OwnedLRU(Generic[K, V]):
    """``key -> value`` with a cost each; the owner of a key is ``key[0]``."""

    def __init__(self, per_owner: int, total: int) -> None:
        if per_owner <= 0 or total <= 0:
            raise ValueError("state caps must be positive")
        self.per_owner = min(per_owner, total)
        self.total = total
        self._owners: dict[Hashable, OrderedDict[K, tuple[V, int]]] = {}
        self._cost: dict[Hashable, int] = {}
        self.cost = 0
        self.evicted: Counter[Hashable] = Counter()
        """Entries pushed out for room, by owner (not counted: expiry, explicit removal)."""
        self.refused: Counter[Hashable] = Counter()
        """Entries too costly to hold at all (over ``per_owner`` on their own), by owner."""
        self._heap: list[tuple[int, int, Hashable]] = []
        """(-cost, tiebreak, owner), lazily: an entry is current when it matches _cost."""
        self._tick = 0

    def __len__(self) -> int:
        return sum(len(d) for d in self._owners.values())

    def __contains__(self, key: K) -> bool:
        d = self._owners.get(key[0])
        return d is not None and key in d

    def get(self, key: K) -> V | None:
        d = self._owners.get(key[0])
        if d is None:
            return None
        hit = d.get(key)
        return hit[0] if hit is not None else None

    def touch(self, key: K) -> None:
        """Mark ``key`` most recently used."""
        d = self._owners.get(key[0])
        if d is not None and key in d:
            d.move_to_end(key)

    def count_of(self, owner: Hashable) -> int:
        d = self._owners.get(owner)
        return len(d) if d is not None else 0

    def cost_of(self, owner: Hashable) -> int:
        return self._cost.get(owner, 0)

    def owners(self) -> list[Hashable]:
        return list(self._owners)

    def keys_of(self, owner: Hashable) -> list[K]:
        d = self._owners.get(owner)
        return list(d) if d is not None else []

    def items(self) -> Iterator[tuple[K, V]]:
        for d in self._owners.values():
            for key, (value, _) in d.items():
                yield key, value

    def put(self, key: K, value: V, cost: int) -> list[tuple[K, V]] | None:
        """Store (or replace) as most recently used; returns what was evicted to make room,
        or None when the entry alone is over the per-owner cap (then nothing is stored and an
        older value under ``key`` is removed: it no longer describes what the owner sends)."""
        owner = key[0]
        if cost > self.per_owner:
            self.pop(key)
            self.refused[owner] += 1
            return None
        d = self._owners.get(owner)
        if d is None:
            d = self._owners[owner] = OrderedDict()
        old = d.pop(key, None)
        if old is not None:
            self._add_cost(owner, -old[1])
        d[key] = (value, cost)
        self._add_cost(owner, cost)
        evicted: list[tuple[K, V]] = []
        while self._cost[owner] > self.per_owner:
            evicted.append(self._evict(owner))
        while self.cost > self.total:
            evicted.append(self._evict(self._largest()))
        return evicted

    def pop(self, key: K) -> V | None:
        owner = key[0]
        d = self._owners.get(owner)
        if d is None:
            return None
        hit = d.pop(key, None)
        if hit is None:
            return None
        self._add_cost(owner, -hit[1])
        if not d:
            del self._owners[owner]
        return hit[0]

    def _evict(self, owner: Hashable) -> tuple[K, V]:
        d = self._owners[owner]
        key, (value, cost) = d.popitem(last=False)
        self._add_cost(owner, -cost)
        if not d:
            del self._owners[owner]
        self.evicted[owner] += 1
        return key, value

    def _add_cost(self, owner: Hashable, delta: int) -> None:
        now = self._cost.get(owner, 0) + delta
        self.cost += delta
        if now:
            self._cost[owner] = now
            self._tick += 1
            heapq.heappush(self._heap, (-now, self._tick, owner))
            if len(self._heap) > 4 * len(self._cost) + 64:  # drop stale entries
                self._heap = [(-c, i, o) for i, (o, c) in enumerate(self._cost.items())]
                heapq.heapify(self._heap)
        else:
            self._cost.pop(owner, None)

    def _largest(self) -> Hashable:
        while True:
            neg, _, owner = self._heap[0]
            if self._cost.get(owner) == -neg:
                return owner
            heapq.heappop(self._heap)
