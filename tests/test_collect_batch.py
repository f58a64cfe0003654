"""Batched decoding (parallel walk of many messages) must equal decoding one datagram at a time."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pyarrow as pa
from collect_support import ipfix_message, ipfix_set, ipfix_template, v9_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowatlas.collect import Decoder
from flowatlas.collect.batch import PAD, walk
from flowatlas.collect.sequence import SequenceTracker, Unit

BASIC = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 4), (1, 4), (152, 8), (153, 8)]
SHORT = [(8, 4), (12, 4), (4, 1), (2, 4), (1, 4)]
T0_MS = 1_700_000_000_000


def basic(i: int) -> bytes:
    return struct.pack("!4s4sHHBIIQQ", bytes([10, 0, 0, i]), bytes([192, 0, 2, i]), 1000 + i, 80,
                       6, i, 100 * i, T0_MS + i, T0_MS + i + 50)


def short(i: int) -> bytes:
    return struct.pack("!4s4sBII", bytes([10, 9, 0, i]), bytes([192, 0, 2, i]), 17, i, 10 * i)


def v9_set(set_id: int, payload: bytes) -> bytes:
    return struct.pack("!HH", set_id, 4 + len(payload)) + payload


def v9_template(tid: int, fields: list[tuple[int, int]]) -> bytes:
    return struct.pack("!HH", tid, len(fields)) + b"".join(struct.pack("!HH", *f) for f in fields)


TPL = ipfix_set(2, ipfix_template(300, BASIC))
TPL_SHORT = ipfix_set(2, ipfix_template(300, SHORT))
V9_TPL = v9_set(0, v9_template(260, [(8, 4), (12, 4), (1, 4), (2, 4), (22, 4), (21, 4)]))


def v9_rec(i: int) -> bytes:
    return struct.pack("!4s4sIIII", bytes([10, 5, 0, i]), bytes([192, 0, 2, 9]), 10 * i, i,
                       90_000, 95_000)


STREAM: list[tuple[bytes, str]] = [
    (ipfix_message([ipfix_set(300, basic(1) + basic(2))], seq=0), "192.0.2.1"),  # before template
    (ipfix_message([TPL, ipfix_set(300, basic(3))], seq=2), "192.0.2.1"),
    (ipfix_message([ipfix_set(300, basic(4) + basic(5))], seq=3), "192.0.2.1"),
    (v9_message([V9_TPL, v9_set(260, v9_rec(1) + v9_rec(2))], seq=0), "192.0.2.2"),
    (ipfix_message([TPL, ipfix_set(300, basic(6)), ipfix_set(300, basic(7))], seq=5), "192.0.2.1"),
    (ipfix_message([ipfix_set(300, basic(8))], seq=9, domain=2), "192.0.2.1"),  # other domain
    (v9_message([v9_set(260, v9_rec(3))], seq=1), "192.0.2.2"),
    (ipfix_message([TPL_SHORT, ipfix_set(300, short(9))], seq=7), "192.0.2.1"),  # redefined
    (ipfix_message([ipfix_set(300, short(10) + short(11))], seq=8), "192.0.2.1"),
    (ipfix_message([ipfix_set(300, short(12)), struct.pack("!HH", 300, 2)], seq=10),
     "192.0.2.1"),  # a broken set after a good one
    (ipfix_message([ipfix_set(300, short(13))], seq=40), "192.0.2.1"),  # a gap
    (b"\x00\x0a\x00", "192.0.2.3"),
    (v9_message([v9_set(260, v9_rec(4))], seq=2)[:30], "192.0.2.2"),
]


def rows(table: pa.Table | None) -> list[tuple[Any, ...]]:
    if table is None:
        return []
    cols = [table[c].cast(pa.int64()) if pa.types.is_timestamp(table[c].type) else table[c]
            for c in table.column_names]  # mutated times can lie outside datetime's range
    return sorted(zip(*(c.to_pylist() for c in cols), strict=True))


def status(d: Decoder) -> dict[str, Any]:
    out = d.status.as_dict()
    for c in out["exporters"].values():
        c.pop("last_seen")
    out.pop("started")
    return out


def one_by_one(stream: list[tuple[bytes, str]]) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    d = Decoder()
    got = []
    for data, exp in stream:
        got += rows(d.decode(data, exp, 1_700_000_100.0))
    return sorted(got), status(d)


def batched(stream: list[tuple[bytes, str]]) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    d = Decoder()
    return rows(d.decode_many(stream, 1_700_000_100.0)), status(d)


def test_batch_equals_one_at_a_time() -> None:
    got, st_batch = batched(STREAM)
    want, st_single = one_by_one(STREAM)
    assert got == want
    assert st_batch == st_single
    # IPFIX 1-7 (1 and 2 held until the template came) and 9-13; 8 waits for a template of
    # its own domain; v9 1-3 (the truncated fourth message has no complete set).
    assert len(got) == 15
    ipfix = st_batch["exporters"]["192.0.2.1"]
    assert ipfix["pending"] == 1 and ipfix["records"] == 12
    assert ipfix["sequence_gaps"] == 1 and ipfix["reasons"] == {"v10_bad_set_length": 1}


def test_walk_finds_every_set() -> None:
    msgs = [m for m, _ in STREAM[:10]]
    buf = np.frombuffer(b"".join(msgs) + bytes(PAD), dtype=np.uint8)
    length = np.array([len(m) for m in msgs], dtype=np.int64)
    m = walk(buf, np.cumsum(length) - length, length)
    per_message = np.bincount(m.set_msg, minlength=len(msgs)).tolist()
    assert per_message == [1, 2, 1, 2, 3, 1, 1, 2, 1, 1]
    assert m.python.tolist() == [False] * 9 + [True]  # the broken set
    assert m.control.tolist() == [False, True, False, True, True, False, False, True, False,
                                  False]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_batches_equal_one_at_a_time(data: st.DataObject) -> None:
    stream = []
    for _ in range(data.draw(st.integers(1, 8))):
        msg, exp = data.draw(st.sampled_from(STREAM))
        raw = bytearray(msg)
        for _ in range(data.draw(st.integers(0, 3))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        stream.append((bytes(raw), exp))
    got, st_batch = batched(stream)
    want, st_single = one_by_one(stream)
    assert got == want
    assert st_batch == st_single
    assert not any(r.startswith("internal_error") for r in st_batch["reasons"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 30)), min_size=1, max_size=30),
       st.sampled_from(list(Unit)), st.integers(0, 5))
def test_sequence_runs_equal_one_message_at_a_time(steps: list[tuple[int, int]], unit: Unit,
                                                   warmup: int) -> None:
    """Mostly consecutive sequence numbers with some jumps: the numpy fast path agrees."""
    seqs, counts, seq = [], [], 1000
    for jump, count in steps:
        seq += jump if jump < 8 else count  # usually follow on, sometimes skip or repeat
        seqs.append(seq % (1 << 32))
        counts.append(count)
    a, b = SequenceTracker(), SequenceTracker()
    key = (bytes(16), 0, 10)
    gaps = lost = resets = 0
    for s, c in zip(seqs, counts, strict=True):
        step = a.observe(key, s, c, unit)
        gaps, lost, resets = gaps + step.gap, lost + step.lost, resets + step.restarted
    split = min(warmup, len(seqs))
    got = [b.observe_many(key, np.array(seqs[:split], dtype=np.int64),
                          np.array(counts[:split], dtype=np.int64), unit),
           b.observe_many(key, np.array(seqs[split:], dtype=np.int64),
                          np.array(counts[split:], dtype=np.int64), unit)]
    assert tuple(sum(x) for x in zip(*got, strict=True)) == (gaps, lost, resets)
    assert a.states() == b.states()
