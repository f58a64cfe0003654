"""Many v9/IPFIX datagrams walked at once: headers and set boundaries as numpy arrays.

The datagrams lie end to end in one byte buffer with an offsets array. Their fixed headers are
read with one gather per field, then the sets of all messages are walked in parallel: each numpy
iteration advances every message by one set, so the number of iterations is the largest number
of sets in one message (about ten for softflowd), not the number of sets. What comes out is one
row per set: (message, set id, body start, body end). A message whose header or set lengths are
wrong, or that has more sets than ``MAX_STEPS``, is flagged for the per-message Python parser,
which counts the reason exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]

MAX_STEPS = 64
"""Sets per message walked in parallel; a message with more goes to the Python parser (a
hostile stream of 4-byte sets must not make every iteration cost a pass over the batch)."""
PAD = 32
"""Zero bytes after the last datagram so header gathers of short datagrams stay in bounds."""


def be16(buf: npt.NDArray[np.uint8], at: I64) -> I64:
    return (buf[at].astype(np.int64) << 8) | buf[at + 1]


def be32(buf: npt.NDArray[np.uint8], at: I64) -> I64:
    return (be16(buf, at) << 16) | be16(buf, at + 2)


@dataclass
class Messages:
    """Header fields per message and one row per set, sets ordered by message."""

    version: I64
    domain: I64
    sequence: I64
    export_us: I64
    uptime_ms: I64
    """v9 sysUptime (ms); 0 for IPFIX."""
    python: npt.NDArray[np.bool_]
    """Messages left to the per-message parser (bad lengths, too many sets)."""
    control: npt.NDArray[np.bool_]
    """Messages with a set id below 256 (templates, options templates, reserved)."""
    set_msg: I64
    set_id: I64
    set_body: I64
    set_end: I64

    def sets_of(self, first: int, last: int) -> slice:
        """Rows of the sets of messages ``first`` .. ``last - 1``."""
        lo, hi = np.searchsorted(self.set_msg, (first, last))
        return slice(int(lo), int(hi))


def walk(buf: npt.NDArray[np.uint8], start: I64, length: I64) -> Messages:
    """Walk v9/IPFIX messages ``buf[start[i]:start[i] + length[i]]`` (buf ends in PAD zeros).

    Every message must be at least 4 bytes long and start with version 9 or 10.
    """
    n = len(start)
    version = buf[start + 1].astype(np.int64)
    v9 = version == 9
    header = np.where(v9, 20, 16)
    ok = length >= header
    ipfix_len = be16(buf, start + 2)
    ok &= v9 | ((ipfix_len >= 16) & (ipfix_len <= length))
    end = start + np.where(v9, length, ipfix_len)
    w1, w2, w3, w4 = (be32(buf, start + k) for k in (4, 8, 12, 16))
    secs = np.where(v9, w2, w1)
    sequence = np.where(v9, w3, w2)
    domain = np.where(v9, w4, w3)
    uptime = np.where(v9, w1, 0)

    python = ~ok
    pos = start + header
    active = ok & (end - pos >= 4)
    rows: list[tuple[I64, I64, I64, I64]] = []
    for _ in range(MAX_STEPS):
        idx = np.flatnonzero(active)
        if not len(idx):
            break
        p = pos[idx]
        sid = be16(buf, p)
        slen = be16(buf, p + 2)
        bad = (slen < 4) | (p + slen > end[idx])
        if bad.any():
            python[idx[bad]] = True
            active[idx[bad]] = False
            good = ~bad
            idx, p, sid, slen = idx[good], p[good], sid[good], slen[good]
        rows.append((idx, sid, p + 4, p + slen))
        pos[idx] = p + slen
        active[idx] = end[idx] - pos[idx] >= 4
    python |= active  # more than MAX_STEPS sets
    if rows:
        set_msg, set_id, set_body, set_end = (np.concatenate(c) for c in zip(*rows, strict=True))
        order = np.argsort(set_msg, kind="stable")
        set_msg, set_id, set_body, set_end = (a[order] for a in (set_msg, set_id, set_body,
                                                                  set_end))
    else:
        set_msg = set_id = set_body = set_end = np.zeros(0, dtype=np.int64)
    control = np.zeros(n, dtype=bool)
    control[set_msg[set_id < 256]] = True
    return Messages(version, domain, sequence, secs * 1_000_000, uptime, python, control,
                    set_msg, set_id, set_body, set_end)


def gather_records(buf: npt.NDArray[np.uint8], body: I64, counts: I64,
                   reclen: int) -> npt.NDArray[np.uint8]:
    """The first ``counts[i]`` records of ``reclen`` bytes at ``body[i]``, as one (N, reclen)
    matrix: one row gather over a sliding-window view, no per-record Python."""
    total = int(counts.sum())
    first = np.cumsum(counts) - counts
    within = np.arange(total, dtype=np.int64) - np.repeat(first, counts)
    rec_start = np.repeat(body, counts) + within * reclen
    windows: npt.NDArray[Any] = np.lib.stride_tricks.sliding_window_view(buf, reclen)
    out: npt.NDArray[np.uint8] = windows[rec_start]
    return out
