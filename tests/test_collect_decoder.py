"""Decoder edge cases on hand-built packets: templates, options, lengths, times, counters."""

from __future__ import annotations

import struct
import time
from datetime import UTC, datetime

import pyarrow.compute as pc
import pytest
from collect_support import ipfix_message, ipfix_set, ipfix_template, v9_message, varlen

from flowatlas.addresses import pack, unpack_many
from flowatlas.collect import Decoder
from flowatlas.governance.sources import SourceRegistry

BASIC = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 4), (1, 4), (152, 8), (153, 8)]
T0_MS = 1_700_000_000_000


def basic_record(i: int, packets: int = 3, octets: int = 300) -> bytes:
    return struct.pack("!4s4sHHBIIQQ", bytes([10, 0, 0, i]), bytes([192, 0, 2, i]), 1000 + i, 80,
                       6, packets, octets, T0_MS + i, T0_MS + i + 50)


def test_ipfix_fixed_template_decodes_each_field() -> None:
    d = Decoder()
    msg = ipfix_message([ipfix_set(2, ipfix_template(300, BASIC)),
                         ipfix_set(300, b"".join(basic_record(i) for i in range(1, 4)))])
    t = d.decode(msg, "192.0.2.200", 1_700_000_001.0)
    assert t is not None and t.num_rows == 3
    assert unpack_many(t["src_addr"]) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert t["src_port"].to_pylist() == [1001, 1002, 1003]
    assert t["time_start"][0].as_py() == datetime.fromtimestamp((T0_MS + 1) / 1000, UTC)
    assert unpack_many(t["exporter"]) == ["192.0.2.200"] * 3
    assert d.status.of(t["exporter"][0].as_py()).records == 3


def test_data_before_template_is_held_then_decoded() -> None:
    d = Decoder()
    data = ipfix_message([ipfix_set(300, basic_record(1) + basic_record(2))], seq=0)
    assert d.decode(data, "192.0.2.1", 100.0) is None
    c = d.status.of(pack("192.0.2.1"))
    assert c.pending == 1
    late = d.decode(ipfix_message([ipfix_set(2, ipfix_template(300, BASIC))], seq=2), "192.0.2.1",
                    101.0)
    assert late is not None and late.num_rows == 2
    assert c.pending == 0 and c.unknown_template == 0


def test_pending_data_expires_and_is_counted() -> None:
    d = Decoder(pending_seconds=5)
    d.decode(ipfix_message([ipfix_set(300, basic_record(1))]), "192.0.2.1", 100.0)
    d.decode(ipfix_message([]), "192.0.2.1", 200.0)
    c = next(iter(d.status.exporters.values()))
    assert c.unknown_template == 1 and c.pending == 0


def test_templates_keyed_by_exporter_and_domain() -> None:
    d = Decoder()
    other = [(8, 4), (12, 4), (2, 4), (1, 4)]  # same template id, different layout elsewhere
    d.decode(ipfix_message([ipfix_set(2, ipfix_template(300, BASIC))]), "192.0.2.1", 1.0)
    d.decode(ipfix_message([ipfix_set(2, ipfix_template(300, other))], domain=7), "192.0.2.2", 1.0)
    t = d.decode(ipfix_message([ipfix_set(300, basic_record(9))]), "192.0.2.1", 2.0)
    assert t is not None and t["src_port"].to_pylist() == [1009]
    # The same set from another exporter/domain has no template: held, not mis-decoded.
    assert d.decode(ipfix_message([ipfix_set(300, basic_record(9))]), "192.0.2.3", 2.0) is None


def test_templates_survive_restart(tmp_path: object) -> None:
    from pathlib import Path

    state = Path(str(tmp_path)) / "state.json"
    d = Decoder(state_path=state)
    now = time.time()
    d.decode(ipfix_message([ipfix_set(2, ipfix_template(300, BASIC))]), "192.0.2.1", now)
    d.save_state()
    again = Decoder(state_path=state)
    t = again.decode(ipfix_message([ipfix_set(300, basic_record(5))]), "192.0.2.1", now + 1)
    assert t is not None and t.num_rows == 1


def test_variable_length_enterprise_and_reduced_size() -> None:
    d = Decoder()
    fields = [(8, 4), (12, 4), (82, 65535), (6, 2, 29305), (1, 2), (2, 1), (7, 2), (11, 2)]
    rec = [struct.pack("!4s4s", bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + varlen(b"eth0")
           + b"\xaa\xbb" + struct.pack("!HBHH", 1500, 2, 1234, 53),
           struct.pack("!4s4s", bytes([10, 0, 0, 3]), bytes([10, 0, 0, 4])) + varlen(b"x" * 300)
           + b"\xcc\xdd" + struct.pack("!HBHH", 70, 1, 5353, 5353)]
    msg = ipfix_message([ipfix_set(2, ipfix_template(400, fields)),
                         ipfix_set(400, b"".join(rec) + b"\x00\x00")])
    t = d.decode(msg, "192.0.2.1", 1.0)
    assert t is not None
    assert t["bytes"].to_pylist() == [1500, 70]
    assert t["packets"].to_pylist() == [2, 1]
    assert t["dst_port"].to_pylist() == [53, 5353]
    assert unpack_many(t["dst_addr"]) == ["10.0.0.2", "10.0.0.4"]


def test_options_template_sampling_per_sampler() -> None:
    d = Decoder()
    options = ipfix_template(500, [(302, 4), (305, 4), (306, 4)], scope=1)
    data_tpl = ipfix_template(301, [(302, 4), *BASIC])
    opt_data = struct.pack("!III", 1, 1, 99) + struct.pack("!III", 2, 1, 9)
    msg = ipfix_message([ipfix_set(3, options), ipfix_set(2, data_tpl), ipfix_set(500, opt_data),
                         ipfix_set(301, struct.pack("!I", 1) + basic_record(1)
                                   + struct.pack("!I", 2) + basic_record(2)
                                   + struct.pack("!I", 3) + basic_record(3))])
    t = d.decode(msg, "192.0.2.1", 1.0)
    assert t is not None
    assert t["sampling_rate"].to_pylist() == [100, 10, 1]


def test_v9_uptime_times_and_options_sampling_interval() -> None:
    d = Decoder()
    tpl = struct.pack("!HH", 260, 6) + b"".join(struct.pack("!HH", e, n) for e, n in
                                                 [(8, 4), (12, 4), (22, 4), (21, 4), (1, 4), (2, 4)])
    opt = struct.pack("!HHH", 261, 4, 4) + struct.pack("!HH", 1, 4) + struct.pack("!HH", 34, 4)
    flowsets = [struct.pack("!HH", 0, 4 + len(tpl)) + tpl,
                struct.pack("!HH", 1, 4 + len(opt) + 2) + opt + b"\x00\x00",
                struct.pack("!HH", 261, 12) + struct.pack("!II", 0, 512),
                struct.pack("!HH", 260, 4 + 24) + struct.pack("!4s4sIIII", b"\x0a\x00\x00\x01",
                                                             b"\x0a\x00\x00\x02", 90_000, 95_000,
                                                             1000, 4)]
    t = d.decode(v9_message(flowsets, uptime_ms=100_000), "2001:db8::1", 1.0)
    assert t is not None and t.num_rows == 1
    assert t["time_start"][0].as_py() == datetime.fromtimestamp(1_700_000_000 - 10, UTC)
    assert t["time_end"][0].as_py() == datetime.fromtimestamp(1_700_000_000 - 5, UTC)
    assert t["sampling_rate"].to_pylist() == [512]
    assert unpack_many(t["exporter"]) == ["2001:db8::1"]


def test_ipfix_ntp_microsecond_times() -> None:
    d = Decoder()
    ntp = ((1_700_000_000 + 2_208_988_800) << 32) | (1 << 31)  # .5 s
    msg = ipfix_message([ipfix_set(2, ipfix_template(300, [(8, 4), (12, 4), (154, 8)])),
                         ipfix_set(300, b"\x0a\x00\x00\x01\x0a\x00\x00\x02" +
                                   struct.pack("!Q", ntp))])
    t = d.decode(msg, "192.0.2.1", 1.0)
    assert t is not None
    assert t["time_start"][0].as_py() == datetime.fromtimestamp(1_700_000_000.5, UTC)


def test_sequence_gap_counted() -> None:
    d = Decoder()
    d.decode(ipfix_message([ipfix_set(2, ipfix_template(300, BASIC))], seq=0), "192.0.2.1", 1.0)
    d.decode(ipfix_message([ipfix_set(300, basic_record(1) + basic_record(2))], seq=0),
             "192.0.2.1", 1.0)
    d.decode(ipfix_message([ipfix_set(300, basic_record(3))], seq=2), "192.0.2.1", 1.0)
    d.decode(ipfix_message([ipfix_set(300, basic_record(4))], seq=10), "192.0.2.1", 1.0)
    c = next(iter(d.status.exporters.values()))
    assert (c.sequence_gaps, c.lost) == (1, 7)


@pytest.mark.parametrize("bad", [b"", b"\x00", b"\x00\x09", b"\x00\x0a\x00\x40" + bytes(12),
                                 b"\x00\x05\x00\x02" + bytes(30), b"\x00\x63" + bytes(40),
                                 b"\x00\x00\x00\x05\x00\x00\x00\x07"])
def test_malformed_is_counted_not_raised(bad: bytes) -> None:
    d = Decoder()
    assert d.decode(bad, "192.0.2.1", 1.0) is None
    c = next(iter(d.status.exporters.values()))
    assert c.malformed == 1 and sum(c.reasons.values()) == 1


def test_unregistered_exporters_are_counted_not_stored(tmp_path: object) -> None:
    from pathlib import Path

    reg = SourceRegistry.for_store(Path(str(tmp_path)))
    reg.add("192.0.2.0/24", 42, "Example Net", sampling=1000)
    d = Decoder(registry=reg)
    msg = ipfix_message([ipfix_set(2, ipfix_template(300, BASIC)),
                         ipfix_set(300, basic_record(1))])
    t = d.decode(msg, "192.0.2.9", 1.0)
    assert t is not None
    assert t["source_id"].to_pylist() == [42] and t["sampling_rate"].to_pylist() == [1000]
    assert d.decode(msg, "198.51.100.1", 1.0) is None
    assert d.status.totals()["unregistered"] == 1
    assert int(pc.sum(t["packets"]).as_py()) == 3


@pytest.mark.parametrize(("datagram", "reason"), [
    (b"\x00\x05\x00\x01" + bytes(12), "v5_truncated_header"),
    (b"\x00\x05\x00\x00" + bytes(20), "v5_bad_record_count"),
    (b"\x00\x05\x00\x1f" + bytes(20 + 31 * 48), "v5_bad_record_count"),
    (b"\x00\x05\x00\x02" + bytes(20 + 48), "v5_truncated_records"),
])
def test_malformed_v5_is_counted_by_reason(datagram: bytes, reason: str) -> None:
    """Malformed v5 leaves the batched path and is counted under what is wrong with it."""
    d = Decoder()
    assert d.decode(datagram, "192.0.2.1", 1.0) is None
    assert dict(d.status.reasons) == {reason: 1}
    good = b"\x00\x05\x00\x01" + bytes(20) + bytes(48)
    table = d.decode(good, "192.0.2.1", 1.0)
    assert table is not None and table.num_rows == 1
