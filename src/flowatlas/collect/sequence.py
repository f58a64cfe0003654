"""Sequence-number gap tracking per (exporter, domain, version).

What the number counts differs: v5 and IPFIX count records (IPFIX: data records only), sFlow
counts datagrams, v9 counts packets by RFC 3954 but many exporters count records, so for v9 the
unit is learnt from the first clean step. A step backwards within a window is reordering (not a
loss); a larger jump backwards, or a gap wider than ``max_gap`` units (a setting: a spoofed or
crafted message claims what it likes), is a reset: the stream starts afresh from it, counted as
a reset and never as loss.
Record counters are learnt to be exclusive (RFC 7011: records sent *before* this message) or
inclusive (softflowd 1.1.0's IPFIX: records sent up to and *including* this message), so a
correct exporter of either kind shows no false gaps.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from flowatlas.collect.bounded import OwnedLRU

MODULO = 1 << 32
REORDER_WINDOW = 1 << 16
DEFAULT_MAX_GAP = 1 << 16
"""Widest gap counted as loss: 65,536 records is over 2,000 full IPFIX messages missing in a
row between two that arrived. Wider is a reset (restart, or a message that is not the
exporter's): a red-team spoofer otherwise claimed 13.7 billion lost records."""
DEFAULT_MAX_STREAMS_PER_EXPORTER = 256
"""Trackers per exporter address: (domain, version) streams, sFlow sub-agents and sources."""
DEFAULT_MAX_STREAMS = 65_536


class Unit(Enum):
    RECORDS = "records"
    PACKETS = "packets"
    LEARN = "learn"  # v9: packets or records, whichever the exporter does


@dataclass
class _State:
    last_seq: int
    last_count: int
    unit: Unit
    inclusive: bool | None = None


@dataclass(frozen=True)
class Step:
    gap: bool = False
    lost: int = 0
    reordered: bool = False
    restarted: bool = False


SequenceKey = tuple[bytes, int, int]


class SequenceTracker:
    """Sequence state per stream, at most ``max_streams_per_exporter`` streams per exporter
    address and ``max_streams`` in all (least recently seen go first, within the exporter that
    holds the most: collect/bounded.py). A stream that was pushed out starts afresh."""

    def __init__(self, max_streams: int = DEFAULT_MAX_STREAMS, *,
                 max_streams_per_exporter: int = DEFAULT_MAX_STREAMS_PER_EXPORTER,
                 max_gap: int = DEFAULT_MAX_GAP) -> None:
        self._state: OwnedLRU[SequenceKey, _State] = OwnedLRU(max_streams_per_exporter,
                                                             max_streams)
        self.max_gap = max_gap

    def __len__(self) -> int:
        return len(self._state)

    @property
    def max_streams(self) -> int:
        return self._state.total

    @property
    def max_streams_per_exporter(self) -> int:
        return self._state.per_owner

    def evicted_for(self, exporter: bytes) -> int:
        return self._state.evicted[exporter]

    def states(self) -> dict[SequenceKey, _State]:
        """A copy of every stream's state (for tests and debugging)."""
        return {k: _State(v.last_seq, v.last_count, v.unit, v.inclusive)
                for k, v in self._state.items()}

    def forget(self, key: SequenceKey) -> None:
        self._state.pop(key)

    def observe(self, key: SequenceKey, seq: int, count: int, unit: Unit) -> Step:
        """Record a message with sequence ``seq`` carrying ``count`` units of its own."""
        st = self._state.get(key)
        if st is None:
            self._state.put(key, _State(seq, count, unit), 1)
            return Step()
        self._state.touch(key)
        delta = (seq - st.last_seq) % MODULO
        if delta > MODULO // 2:
            if MODULO - delta <= REORDER_WINDOW:
                return Step(reordered=True)
            self._state.put(key, _State(seq, count, st.unit), 1)
            return Step(restarted=True)
        unit = st.unit
        if unit is Unit.LEARN:
            if delta == 1 and st.last_count != 1 and count != 1:
                unit = Unit.PACKETS
            elif delta != 1 and delta in (st.last_count, count):
                unit = Unit.RECORDS
        if unit is not Unit.PACKETS and st.inclusive is None and st.last_count != count:
            if delta == st.last_count:
                st.inclusive = False
            elif delta == count:
                st.inclusive = True
        if unit is Unit.PACKETS or unit is Unit.LEARN:
            expected = 1
        else:
            expected = count if st.inclusive else st.last_count
        lost = delta - expected
        if lost > self.max_gap:
            self._state.put(key, _State(seq, count, unit), 1)
            return Step(restarted=True)
        st.last_seq, st.last_count, st.unit = seq, count, unit
        if delta == 0 and expected > 0:
            return Step(reordered=True)  # a duplicate
        return Step(gap=True, lost=lost) if lost > 0 else Step()

    def steps(self, key: SequenceKey, values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64] | None:
        """Forward distance (mod 2**32) to each value from the one before it, the first from
        the stored state; None when ``key`` has none yet. Nothing is changed."""
        st = self._state.get(key)
        if st is None or not len(values):
            return None
        prev = np.concatenate(([st.last_seq], values[:-1]))
        out: npt.NDArray[np.int64] = (values - prev) % MODULO
        return out

    def advance(self, key: SequenceKey, seq: int, count: int) -> None:
        """Move a known key on to ``seq`` (after :meth:`steps` showed the run is clean)."""
        st = self._state.get(key)
        assert st is not None, "advance() follows steps() on a known key"
        st.last_seq, st.last_count = seq, count

    def observe_many(self, key: SequenceKey, seqs: npt.NDArray[np.int64],
                     counts: npt.NDArray[np.int64], unit: Unit) -> tuple[int, int, int]:
        """Messages of one key in order; returns (gaps, units lost, resets).

        Once the convention is learnt, the common case (every message exactly where the
        previous one said it would be) is checked with numpy over the rest of the run; the
        first message that is not goes through :meth:`observe` (learning, reordering, restarts
        and losses behave exactly the same), then the check resumes after it.
        """
        gaps = lost = resets = 0
        n, i, tries = len(seqs), 0, 0
        while i < n:
            st = self._state.get(key)
            if st is not None and st.unit is not Unit.LEARN and tries < 16:
                tries += 1
                self._state.touch(key)
                k = self._clean_prefix(st, seqs[i:], counts[i:])
                if k:
                    i += k
                    st.last_seq, st.last_count = int(seqs[i - 1]), int(counts[i - 1])
                    if i == n:
                        break
            step = self.observe(key, int(seqs[i]), int(counts[i]), unit)
            if step.gap:
                gaps += 1
                lost += step.lost
            resets += step.restarted
            i += 1
        return gaps, lost, resets

    @staticmethod
    def _clean_prefix(st: _State, seqs: npt.NDArray[np.int64],
                      counts: npt.NDArray[np.int64]) -> int:
        """How many leading messages follow on exactly, each from the one before."""
        prev_seq = np.concatenate(([st.last_seq], seqs[:-1]))
        prev_count = np.concatenate(([st.last_count], counts[:-1]))
        delta = (seqs - prev_seq) % MODULO
        if st.unit is Unit.PACKETS:
            ok = delta == 1
        elif st.inclusive is None:  # only steps that cannot teach the convention
            ok = (counts == prev_count) & (delta == counts) & (counts > 0)
        else:  # exactly what observe() lets pass silently: no gap, no duplicate
            expected = counts if st.inclusive else prev_count
            ok = (delta <= expected) & ((delta > 0) | (expected == 0))
        bad = np.flatnonzero(~ok)
        return int(bad[0]) if len(bad) else len(ok)
