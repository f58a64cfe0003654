"""Fuzzing the decoders: no datagram, however hostile, may raise or poison later decoding."""

from __future__ import annotations

import struct

from collect_support import ipfix_message, ipfix_set, ipfix_template
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowatlas.addresses import pack
from flowatlas.collect import Decoder
from flowatlas.schema import FLOW_SCHEMA

TEMPLATE = ipfix_message([ipfix_set(2, ipfix_template(300, [(8, 4), (12, 4), (82, 65535),
                                                              (1, 4), (2, 4)]))])
GOOD = ipfix_message([ipfix_set(300, b"\x0a\x00\x00\x01\x0a\x00\x00\x02\x02ab" +
                                struct.pack("!II", 100, 2))])
EXPORTER = pack("192.0.2.1")
HEADERS = [b"\x00\x05", b"\x00\x09", b"\x00\x0a", b"\x00\x00\x00\x05"]


def _check(decoder: Decoder, data: bytes) -> None:
    before = decoder.status.totals()["records"]
    out = decoder.decode(data, "192.0.2.1", 1000.0)
    kept = decoder.status.totals()["records"] - before
    # Whatever comes out is a valid table in the canonical schema, and exactly the records the
    # counters say were kept (None: nothing was).
    if out is None:
        assert kept == 0
    else:
        assert out.schema.equals(FLOW_SCHEMA, check_metadata=False)
        out.validate(full=True)
        assert out.num_rows == kept > 0
        assert set(out.column("exporter").to_pylist()) == {EXPORTER}
    assert not any(r.startswith("internal_error") for r in decoder.status.reasons), \
        decoder.status.reasons


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(HEADERS), st.binary(max_size=600))
def test_random_bytes_after_a_version(prefix: bytes, tail: bytes) -> None:
    d = Decoder()
    d.decode(TEMPLATE, "192.0.2.1", 1000.0)
    _check(d, prefix + tail)
    after = d.decode(GOOD, "192.0.2.1", 1000.0)
    assert after is not None and after.num_rows == 1


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_real_messages(data: st.DataObject) -> None:
    base = bytearray(data.draw(st.sampled_from([TEMPLATE, GOOD, TEMPLATE + GOOD[16:]])))
    if len(base) > 16:
        struct.pack_into("!H", base, 2, len(base))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(base) - 1))
        base[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(base)))
    d = Decoder()
    d.decode(TEMPLATE, "192.0.2.1", 1000.0)
    _check(d, bytes(base[:cut]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)), min_size=1,
                max_size=20), st.binary(max_size=300))
def test_hostile_templates(fields: list[tuple[int, int]], payload: bytes) -> None:
    d = Decoder()
    tpl = ipfix_message([ipfix_set(2, ipfix_template(300, [(e & 0x7FFF, n) for e, n in fields]))])
    _check(d, tpl)
    _check(d, ipfix_message([ipfix_set(300, payload)]))
