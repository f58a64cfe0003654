"""Bounded decoder state (issue 18.3, 18.4): templates, held data sets and sequence trackers
are capped per exporter and in total, one exporter's flood never evicts another's state, and
sequence gaps too wide to be loss are resets."""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
from collect_support import ipfix_message, ipfix_set, ipfix_template
from hypothesis import given, settings
from hypothesis import strategies as st

from flowatlas.addresses import pack
from flowatlas.collect import Decoder
from flowatlas.collect.bounded import OwnedLRU
from flowatlas.collect.datagram import StateLimits, _template_set_cached
from flowatlas.collect.sequence import SequenceTracker, Unit
from flowatlas.collect.templates import FIELD_BYTES, TEMPLATE_BYTES

BASIC = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 4), (1, 4), (152, 8), (153, 8)]
T0_MS = 1_700_000_000_000
A, B, C = "192.0.2.1", "192.0.2.2", "192.0.2.3"


def record(i: int) -> bytes:
    return struct.pack("!4s4sHHBIIQQ", bytes([10, 0, 0, i % 256]), bytes([192, 0, 2, 9]),
                       1000, 80, 6, 3, 300, T0_MS, T0_MS + 50)


def wide(n: int) -> list[tuple[int, int]]:
    """``n`` fields of distinct (unused) element ids, 4 bytes each, then BASIC."""
    return [(400 + i, 4) for i in range(n)] + BASIC


def wide_record(n: int, i: int) -> bytes:
    return bytes(4 * n) + record(i)


def test_template_footprint_estimate_is_not_below_what_is_allocated() -> None:
    """The estimate (2,048 + 120 per field) against tracemalloc, for templates that were
    stored and used for data (their layout cache built), small and large."""
    for n, count in ((20, 200), (500, 40)):
        d = Decoder(limits=StateLimits(template_max_bytes_per_exporter=1 << 30,
                                       template_max_bytes=1 << 30))
        # Warm up the code paths (and their one-off caches) on another exporter.
        d.decode(ipfix_message([ipfix_set(2, ipfix_template(256, wide(n))),
                                ipfix_set(256, wide_record(n, 0))]), C, 1.0)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for t in range(count):
            d.decode(ipfix_message([ipfix_set(2, ipfix_template(256 + t, wide(n))),
                                    ipfix_set(256 + t, wide_record(n, t))]), A, 1.0)
        _template_set_cached.cache_clear()  # bounded on its own (512 sets of up to 1 KiB)
        per = (tracemalloc.get_traced_memory()[0] - before) / count
        tracemalloc.stop()
        estimate = TEMPLATE_BYTES + FIELD_BYTES * (n + len(BASIC))
        assert d.templates.count_for(pack(A)) == count
        assert per <= estimate, (n, per, estimate)
        assert estimate <= 2.5 * per, (n, per, estimate)  # honest, not padded out of sight


def test_one_exporters_flood_never_evicts_anothers_templates() -> None:
    """The red team's flood: one exporter sends template after template. It keeps at most its
    share (its most recently refreshed), the next exporter's templates are stored and decode."""
    cap = 256 << 10
    d = Decoder(limits=StateLimits(template_max_bytes_per_exporter=cap,
                                   template_max_bytes=4 * cap))
    d.decode(ipfix_message([ipfix_set(2, ipfix_template(300, BASIC))]), B, 1.0)
    for t in range(400):
        d.decode(ipfix_message([ipfix_set(2, ipfix_template(256 + t, wide(100)))],
                               domain=t // 50), A, 1.0)
    d.refresh_state_status()
    a, b = d.status.of(pack(A)), d.status.of(pack(B))
    assert a.template_bytes <= cap and 0 < a.templates < 400
    assert a.templates_evicted == 400 - a.templates
    # The newest of the flood survive, the oldest went.
    assert d.templates.get((pack(A), 10, 7, 256 + 399)) is not None
    assert d.templates.get((pack(A), 10, 0, 256)) is None
    assert b.templates == 1
    # A third exporter arriving after the flood is stored and decodes, and so does the first.
    out = d.decode(ipfix_message([ipfix_set(2, ipfix_template(300, BASIC)),
                                  ipfix_set(300, record(1))]), C, 1.0)
    assert out is not None and out.num_rows == 1
    out = d.decode(ipfix_message([ipfix_set(300, record(2))], seq=0), B, 1.0)
    assert out is not None and out.num_rows == 1
    assert d.status.held["templates"]["bytes"] <= 4 * cap


def test_a_full_cache_takes_room_from_the_exporter_holding_most() -> None:
    per, total = 200 << 10, 300 << 10
    d = Decoder(limits=StateLimits(template_max_bytes_per_exporter=per, template_max_bytes=total))
    for t in range(100):  # A: up to its share
        d.decode(ipfix_message([ipfix_set(2, ipfix_template(256 + t, wide(100)))]), A, 1.0)
    for t in range(3):  # B: a few
        d.decode(ipfix_message([ipfix_set(2, ipfix_template(256 + t, wide(100)))]), B, 1.0)
    assert d.templates.total_bytes <= total
    assert d.templates.count_for(pack(B)) == 3
    assert d.templates.evicted_for(pack(B)) == 0 and d.templates.evicted_for(pack(A)) > 0


def test_a_template_over_the_cap_alone_is_refused_and_counted() -> None:
    d = Decoder(limits=StateLimits(template_max_bytes_per_exporter=32 << 10))
    d.decode(ipfix_message([ipfix_set(2, ipfix_template(256, wide(400)))]), A, 1.0)
    c = d.status.of(pack(A))
    assert d.templates.count_for(pack(A)) == 0
    assert c.reasons["v10_template_over_cap"] == 1 and c.malformed == 0
    assert d.templates.evicted_for(pack(A)) == 1


def test_held_data_sets_are_bounded_per_exporter() -> None:
    """A flood of data sets without templates from A never pushes out B's held sets."""
    d = Decoder(limits=StateLimits(pending_max_bytes_per_exporter=64 << 10,
                                   pending_max_bytes=128 << 10))
    d.decode(ipfix_message([ipfix_set(300, record(1))]), B, 1.0)
    for t in range(2000):
        d.decode(ipfix_message([ipfix_set(256 + t % 1000, record(t) * 10)], domain=t // 1000),
                 A, 1.0)
    assert d.pending.bytes_for(pack(A)) <= 64 << 10
    assert d.pending.total_bytes <= 128 << 10
    a = d.status.of(pack(A))
    assert a.unknown_template > 0 and a.pending + a.unknown_template == 2000
    out = d.decode(ipfix_message([ipfix_set(2, ipfix_template(300, BASIC))], seq=1), B, 1.0)
    assert out is not None and out.num_rows == 1


def test_sequence_streams_are_bounded_per_exporter() -> None:
    d = Decoder(limits=StateLimits(sequence_max_streams_per_exporter=8))
    d.decode(ipfix_message([ipfix_set(2, ipfix_template(300, BASIC))], domain=1), B, 1.0)
    for dom in range(1000):
        d.decode(ipfix_message([], seq=dom, domain=dom), A, 1.0)
    assert d.sequences.evicted_for(pack(A)) == 1000 - 8
    assert len(d.sequences) == 9
    d.decode(ipfix_message([ipfix_set(300, record(1))], seq=5, domain=1), B, 1.0)
    assert d.status.of(pack(B)).lost == 5  # B's stream was kept: its gap is still seen


# -- sequence gaps beyond a plausible jump ---------------------------------------------------


def _stream(seqs: list[int], domain: int = 1) -> list[bytes]:
    return [ipfix_message([ipfix_set(300, record(i))], seq=s, domain=domain)
            for i, s in enumerate(seqs)]


def _decoders(messages: list[bytes]) -> tuple[Decoder, Decoder]:
    """The same messages one at a time and as one batch (the vectorised path)."""
    one, many = Decoder(), Decoder()
    for d in (one, many):
        d.decode(ipfix_message([ipfix_set(2, ipfix_template(300, BASIC))]), A, 1.0)
    for m in messages:
        one.decode(m, A, 1.0)
    many.decode_many([(m, A) for m in messages], 1.0)
    return one, many


def test_a_spoofed_sequence_number_is_a_reset_not_loss() -> None:
    """A real stream (one record per message) with crafted messages 10 million ahead between."""
    seqs = [0, 1, 2, 10_000_002, 3, 4, 20_000_004, 5, 6]
    for d in _decoders(_stream(seqs)):
        c = d.status.of(pack(A))
        assert c.lost == 0 and c.sequence_gaps == 0
        assert c.sequence_resets == 4  # to each crafted number, and back


def test_crafted_domains_do_not_inflate_a_real_exporters_loss() -> None:
    """The red team's second attack: messages in other observation domains, 10M apart."""
    real = _stream(list(range(50)), domain=1)
    crafted = [ipfix_message([], seq=s, domain=dom) for dom in range(2, 40)
               for s in (dom * 7, dom * 7 + 10_000_000, dom * 7 + 20_000_000)]
    mixed = [m for pair in zip(real, crafted, strict=False) for m in pair] + crafted[len(real):]
    for d in _decoders(mixed):
        c = d.status.of(pack(A))
        assert c.lost == 0 and c.sequence_gaps == 0 and c.sequence_resets == 2 * 38


def test_a_gap_within_the_plausible_jump_is_still_loss() -> None:
    for d in _decoders(_stream([0, 1, 2, 1_002, 1_003])):
        c = d.status.of(pack(A))
        assert (c.sequence_gaps, c.lost, c.sequence_resets) == (1, 999, 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["on", "small", "wide", "huge", "back"]),
                          st.integers(0, 30)), min_size=1, max_size=30),
       st.sampled_from(list(Unit)), st.integers(0, 5), st.integers(1, 1 << 17))
def test_both_paths_agree_on_wide_gaps(steps: list[tuple[str, int]], unit: Unit, warmup: int,
                                       max_gap: int) -> None:
    """observe() one message at a time and observe_many() agree whatever the jumps, and no
    step ever counts more than max_gap as lost."""
    jumps = {"small": 37, "wide": max_gap + 40, "huge": 1 << 30, "back": (1 << 32) - 70_000}
    seqs, counts, seq = [], [], 1000
    for kind, count in steps:
        seq += count if kind == "on" else jumps[kind]
        seqs.append(seq % (1 << 32))
        counts.append(count)
    a, b = SequenceTracker(max_gap=max_gap), SequenceTracker(max_gap=max_gap)
    key = (bytes(16), 0, 10)
    gaps = lost = resets = 0
    for s, c in zip(seqs, counts, strict=True):
        step = a.observe(key, s, c, unit)
        assert step.lost <= max_gap
        gaps, lost, resets = gaps + step.gap, lost + step.lost, resets + step.restarted
    split = min(warmup, len(seqs))
    got = [b.observe_many(key, np.array(part, dtype=np.int64),
                          np.array(cpart, dtype=np.int64), unit)
           for part, cpart in ((seqs[:split], counts[:split]), (seqs[split:], counts[split:]))]
    assert tuple(sum(x) for x in zip(*got, strict=True)) == (gaps, lost, resets)
    assert a.states() == b.states()


# -- the bounded table itself ----------------------------------------------------------------


def test_owned_lru_evicts_within_the_owner_then_from_the_largest() -> None:
    lru: OwnedLRU[tuple[str, int], str] = OwnedLRU(per_owner=3, total=5)
    for i in range(5):
        assert lru.put(("a", i), f"a{i}", 1) is not None
    assert [k for k, _ in lru.items()] == [("a", 2), ("a", 3), ("a", 4)]
    lru.touch(("a", 2))
    lru.put(("b", 0), "b0", 1)
    lru.put(("b", 1), "b1", 1)
    evicted = lru.put(("c", 0), "c0", 1)  # total over: "a" holds the most, its LRU goes
    assert evicted == [(("a", 3), "a3")]
    assert lru.cost == 5 and lru.evicted["a"] == 3 and lru.evicted["b"] == 0
    assert lru.put(("b", 9), "big", 4) is None and lru.refused["b"] == 1
    assert lru.pop(("a", 2)) == "a2" and lru.cost_of("a") == 1


def test_sampling_rates_are_bounded_per_exporter() -> None:
    """A flood of sampler ids from one exporter never pushes out another exporter's rate (the
    shared count cap used to stop learning everyone's rates once one exporter filled it)."""
    from flowatlas.collect.sampling import SamplingRates
    from flowatlas.protocols.elements import IE

    def values(rate: int, sid: int) -> dict[int, np.ndarray]:
        return {IE.SAMPLING_INTERVAL: np.array([rate], dtype=np.uint64),
                IE.SAMPLER_ID: np.array([sid], dtype=np.uint64)}

    rates = SamplingRates(max_entries=20, max_per_exporter=16)
    a, b, c = pack(A), pack(B), pack(C)
    rates.learn(b, 10, 1, {IE.SAMPLING_INTERVAL: np.array([100], dtype=np.uint64)}, 1)
    for sid in range(1000):
        rates.learn(a, 10, 1, values(7, sid), 1)
    assert rates.default(b, 10, 1) == 100
    for sid in range(5):  # the table is full: room comes from A, the biggest holder
        rates.learn(c, 10, 1, values(50, sid), 1)
    got = rates.for_records(c, 10, 1, {IE.SAMPLER_ID: np.arange(5, dtype=np.uint64)}, 5)
    assert got.tolist() == [50] * 5
    assert rates.default(b, 10, 1) == 100
    assert rates._rates.cost_of(a) == 14 and rates._rates.cost == 20


def test_a_flood_of_spoofed_exporter_addresses_keeps_the_status_bounded() -> None:
    """Every source address got counters of its own, forever: a spoofed flood grew memory and
    the status file without bound. The most recently seen keep theirs; totals stay exact."""
    d = Decoder(limits=StateLimits(status_max_exporters=50))
    d.decode(ipfix_message([ipfix_set(2, ipfix_template(300, BASIC)),
                            ipfix_set(300, record(1))]), A, 1.0)
    spoofed = [(ipfix_message([], seq=0), f"10.9.{i // 256}.{i % 256}") for i in range(3000)]
    for n, i in enumerate(range(0, len(spoofed), 20)):  # batches smaller than the cap
        d.decode_many(spoofed[i:i + 20], 1.0)
        d.decode(ipfix_message([ipfix_set(300, record(2))], seq=n + 1), A, 1.0)  # A stays recent
    assert len(d.status.exporters) == 50 and pack(A) in d.status.exporters
    totals = d.status.totals()
    assert totals["packets"] == 1 + 3000 + 150 and totals["records"] == 1 + 150
    assert d.status.of(pack(A)).lost == 0
    assert totals["exporters_evicted"] == 3001 - 50
    assert len(d.status.as_dict()["exporters"]) == 50
