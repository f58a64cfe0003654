"""sFlow v5 on hand-built datagrams: extended gateway AS numbers, sample loss and drops."""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from collect_support import drain, has_tool, udp_sink, write_pcap
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowatlas.addresses import pack, unpack_many
from flowatlas.collect import Decoder
from flowatlas.collect.status import ExporterCounters

EXPORTER = "192.0.2.1"
Segment = tuple[int, list[int]]


# -- a small sFlow v5 encoder, per the sFlow v5 specification (XDR, big-endian) ----------------

def xdr(*values: int) -> bytes:
    return struct.pack(f"!{len(values)}I", *values)


def tlv(fmt: int, body: bytes, length: int | None = None) -> bytes:
    return xdr(fmt, len(body) if length is None else length) + body


def address(addr: str | None) -> bytes:
    if addr is None:
        return xdr(0)
    ip = ipaddress.ip_address(addr)
    return xdr(1 if ip.version == 4 else 2) + ip.packed


def frame(src: str, dst: str, sport: int, dport: int, flags: int = 0x12) -> bytes:
    """Ethernet + IPv4 + TCP, as an agent samples it."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0,
                     ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, flags, 1024, 0, 0)
    return bytes(6) + bytes(range(1, 7)) + b"\x08\x00" + ip + tcp


def raw_header(packet: bytes, frame_len: int = 1500) -> bytes:
    padded = packet + bytes(-len(packet) % 4)
    return tlv(1, xdr(1, frame_len, 4, len(packet)) + padded)


def gateway(nexthop: str | None = "198.51.100.1", router_as: int = 65000, src_as: int = 64496,
            src_peer_as: int = 64497, path: list[Segment] | None = None,
            communities: list[int] | None = None, localpref: int = 100) -> bytes:
    """An extended gateway record's body (enterprise 0, format 1003)."""
    path = [] if path is None else path
    communities = [] if communities is None else communities
    body = address(nexthop) + xdr(router_as, src_as, src_peer_as, len(path))
    for kind, ases in path:
        body += xdr(kind, len(ases), *ases)
    return body + xdr(len(communities), *communities) + xdr(localpref)


def flow_sample(records: list[bytes], seq: int = 1, source: int = 3, rate: int = 100,
                drops: int = 0, expanded: bool = False) -> bytes:
    pool = seq * rate % (1 << 32)  # the sample pool: packets seen, wrapping like the rest
    if expanded:
        body = xdr(seq, source >> 24, source & 0xFFFFFF, rate, pool, drops, 0, 3, 0, 4,
                   len(records))
        return tlv(3, body + b"".join(records))
    body = xdr(seq, source, rate, pool, drops, 3, 4, len(records))
    return tlv(1, body + b"".join(records))


def datagram(samples: list[bytes], seq: int = 1, sub_agent: int = 0) -> bytes:
    return xdr(5) + address("192.0.2.1") + xdr(sub_agent, seq, 1000, len(samples)) + \
        b"".join(samples)


def packet(i: int = 1) -> bytes:
    return raw_header(frame(f"10.0.0.{i}", f"203.0.113.{i}", 40000 + i, 443))


def decode(*datagrams: bytes, decoder: Decoder | None = None) -> tuple[Decoder, list[dict[str, Any]]]:
    d = decoder or Decoder()
    rows: list[dict[str, Any]] = []
    for dg in datagrams:
        t = d.decode(dg, EXPORTER, 1_700_000_000.0)
        if t is not None:
            rows += t.select(["src_port", "src_as", "dst_as", "in_if", "sampling_rate"]) \
                .to_pylist()
    return d, rows


def counters(d: Decoder) -> ExporterCounters:
    return d.status.of(pack(EXPORTER))


# -- extended gateway ----------------------------------------------------------------------

@pytest.mark.parametrize("nexthop", ["198.51.100.1", "2001:db8::1", None])
def test_gateway_as_numbers_with_any_next_hop(nexthop: str | None) -> None:
    rec = tlv(1003, gateway(nexthop, src_as=64496, path=[(2, [64511, 64510, 64499])],
                            communities=[0xFDE80001, 0xFDE80002]))
    d, rows = decode(datagram([flow_sample([packet(1), rec])]))
    assert [(r["src_port"], r["src_as"], r["dst_as"]) for r in rows] == [(40001, 64496, 64499)]
    assert counters(d).malformed == 0


def test_dst_as_is_the_last_as_of_the_last_segment() -> None:
    paths: list[tuple[list[Segment], int]] = [
        ([], 0),                                           # no path: 0
        ([(2, [64500])], 64500),                           # the neighbour is the origin
        ([(2, [64500, 64501]), (1, [64502, 64503])], 64503),  # AS_SEQUENCE then AS_SET
        ([(2, [64500, 64501]), (2, [])], 0),               # empty last segment (as sflowtool)
        ([(2, [4_200_000_000, 4_294_967_295])], 4_294_967_295),  # 4-byte ASNs
    ]
    samples = [flow_sample([packet(i), tlv(1003, gateway(path=p, src_as=100 + i))], seq=i)
               for i, (p, _) in enumerate(paths, 1)]
    _, rows = decode(datagram(samples))
    assert [r["dst_as"] for r in rows] == [want for _, want in paths]
    assert [r["src_as"] for r in rows] == [101, 102, 103, 104, 105]


def test_zero_src_as_is_not_replaced_by_the_routers_as() -> None:
    rec = tlv(1003, gateway(router_as=65000, src_as=0, path=[(2, [64500])]))
    _, rows = decode(datagram([flow_sample([packet(), rec])]))
    assert (rows[0]["src_as"], rows[0]["dst_as"]) == (0, 64500)


def test_record_order_other_records_and_expanded_samples() -> None:
    router = tlv(1002, address("198.51.100.9") + xdr(24, 16))  # extended router: skipped
    switch = tlv(1001, xdr(10, 0, 20, 0))
    gw = tlv(1003, gateway(src_as=7, path=[(2, [8, 9])]))
    samples = [
        flow_sample([gw, router, packet(1)], seq=1),            # gateway before the header
        flow_sample([packet(2), switch, router, gw], seq=2),
        flow_sample([packet(3), gw], seq=1, source=(0 << 24) | 9, expanded=True),
        flow_sample([packet(4)], seq=3),                         # no gateway: AS 0
        flow_sample([packet(5), tlv(1003, gateway(src_as=1, path=[(2, [2])])), gw], seq=4),
    ]
    d, rows = decode(datagram(samples))
    got = [(r["src_port"], r["src_as"], r["dst_as"]) for r in rows]
    assert got == [(40001, 7, 9), (40002, 7, 9), (40003, 7, 9), (40004, 0, 0), (40005, 1, 2)]
    assert counters(d).malformed == 0


def test_gateway_fields_in_mixed_batches_of_datagrams() -> None:
    d = Decoder()
    dgs = [(datagram([flow_sample([packet(i), tlv(1003, gateway(src_as=i, path=[(2, [i * 10])]))],
                                  seq=i)], seq=i), EXPORTER) for i in range(1, 6)]
    t = d.decode_many(dgs, 1_700_000_000.0)
    assert t is not None
    assert t["src_as"].to_pylist() == [1, 2, 3, 4, 5]
    assert t["dst_as"].to_pylist() == [10, 20, 30, 40, 50]
    assert unpack_many(t["src_addr"]) == [f"10.0.0.{i}" for i in range(1, 6)]


MALFORMED = {
    "address type": xdr(3) + bytes(28),
    "segments past the record": address("198.51.100.1") + xdr(1, 2, 3, 1000),
    "ases past the record": address("198.51.100.1") + xdr(1, 2, 3, 1, 2, 500, 64500),
    "communities past the record": address(None) + xdr(1, 2, 3, 0, 50, 1, 2),
    "no localpref": address(None) + xdr(1, 2, 3, 1, 2, 1, 64500, 0),
    "ipv6 next hop cut": xdr(2) + bytes(10),
    "empty": b"",
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=list(MALFORMED))
def test_malformed_gateway_is_counted_and_its_sample_kept(body: bytes) -> None:
    good = tlv(1003, gateway(src_as=11, path=[(2, [12])]))
    dg = datagram([flow_sample([packet(1), good], seq=1),
                   flow_sample([packet(2), tlv(1003, body)], seq=2),
                   flow_sample([packet(3), good], seq=3)])
    d, rows = decode(dg)
    assert [(r["src_port"], r["src_as"], r["dst_as"]) for r in rows] == \
        [(40001, 11, 12), (40002, 0, 0), (40003, 11, 12)]
    c = counters(d)
    assert c.reasons == {"sflow_bad_gateway_record": 1} and c.malformed == 1
    assert c.records == 3


def test_gateway_cut_at_every_length_never_over_reads() -> None:
    """The record's length says where it ends: whatever follows it (here a valid sample whose
    bytes would parse as AS numbers) must never be read as part of it."""
    full = gateway(nexthop="2001:db8::1", src_as=5, path=[(2, [1, 2, 3]), (1, [4])],
                   communities=[9])
    for cut in range(0, len(full), 4):
        dg = datagram([flow_sample([packet(1), tlv(1003, full[:cut])], seq=1),
                       flow_sample([packet(2), tlv(1003, full)], seq=2)])
        d, rows = decode(dg)
        assert [(r["src_as"], r["dst_as"]) for r in rows] == [(0, 0), (5, 4)], cut
        assert counters(d).reasons == {"sflow_bad_gateway_record": 1}, cut


def test_gateway_running_past_its_sample_skips_the_datagram() -> None:
    bad = flow_sample([packet(1), tlv(1003, gateway(), length=4000)])
    d, rows = decode(datagram([bad]))
    assert rows == []
    assert counters(d).reasons == {"sflow_record_runs_past_its_sample": 1}
    _, rows = decode(datagram([flow_sample([packet(2), tlv(1003, gateway(src_as=3))])], seq=2),
                     decoder=d)
    assert [r["src_as"] for r in rows] == [3]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_gateway_datagrams_never_break_the_decoder(data: st.DataObject) -> None:
    base = bytearray(datagram([
        flow_sample([packet(1), tlv(1003, gateway("2001:db8::1", path=[(2, [1, 2]), (1, [3])],
                                                  communities=[7]))], seq=1),
        flow_sample([tlv(1003, gateway(path=[(2, [4])])), packet(2)], seq=2, expanded=True)]))
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(base) - 1))
        base[i] = data.draw(st.sampled_from([0, 1, 2, 3, 0x7F, 0xFF, data.draw(st.integers(0,
                                                                                         255))]))
    d = Decoder()
    t = d.decode(bytes(base[:data.draw(st.integers(0, len(base)))]), EXPORTER, 1000.0)
    assert t is None or t.num_rows <= 2
    assert not any(r.startswith("internal_error") for r in d.status.reasons), d.status.reasons


# -- sample sequence numbers and drops -----------------------------------------------------

def run(samples: list[tuple[int, int, int]], decoder: Decoder | None = None,
        sub_agent: int = 0, expanded: bool = False) -> ExporterCounters:
    """One datagram per (source, sample sequence, drops)."""
    d = decoder or Decoder()
    for n, (source, seq, drops) in enumerate(samples, 1):
        dg = datagram([flow_sample([packet()], seq=seq, source=source, drops=drops,
                                   expanded=expanded)], seq=n, sub_agent=sub_agent)
        d.decode(dg, EXPORTER, 1000.0)
    return counters(d)


def test_consecutive_samples_count_nothing() -> None:
    c = run([(3, s, 7) for s in range(1, 50)])
    assert (c.sflow_sample_gaps, c.sflow_drops, c.sequence_gaps) == (0, 0, 0)


def test_sample_gaps_and_drops_per_data_source() -> None:
    c = run([(3, 1, 0), (4, 100, 50), (3, 2, 0), (3, 5, 2), (4, 101, 50), (4, 110, 58),
             (3, 6, 9)])
    assert c.sflow_sample_gaps == 2 + 8  # source 3: 3 and 4 missing; source 4: 102..109
    assert c.sflow_drops == 9 + 8
    assert c.sequence_gaps == 0  # every datagram arrived: the loss was at the agent
    d = c.as_dict()
    assert (d["sflow_sample_gaps"], d["sflow_drops"]) == (10, 17)


def test_several_samples_of_one_source_in_one_datagram() -> None:
    d = Decoder()
    dg = datagram([flow_sample([packet(i)], seq=s, drops=dr)
                   for i, (s, dr) in enumerate([(10, 1), (11, 1), (14, 4), (15, 6)], 1)])
    d.decode(dg, EXPORTER, 1000.0)
    c = counters(d)
    assert (c.sflow_sample_gaps, c.sflow_drops, c.records) == (2, 5, 4)


def test_wrap_around_at_two_to_the_32() -> None:
    top = 1 << 32
    c = run([(3, top - 2, top - 3), (3, top - 1, top - 1), (3, 0, 1), (3, 1, 1), (3, 3, 2)])
    assert c.sflow_sample_gaps == 1  # only 2 is missing
    assert c.sflow_drops == 2 + 2 + 1


def test_restart_is_not_loss() -> None:
    d = Decoder()
    run([(3, 5_000_000, 900), (3, 5_000_001, 900)], decoder=d)
    c = run([(3, 1, 0), (3, 2, 4), (3, 4, 4)], decoder=d)  # the agent restarted
    assert c.sflow_sample_gaps == 1  # 3 missing after the restart; nothing for the jump
    assert c.sflow_drops == 4  # counted from the restarted counter, not from 900


def test_reordered_sample_is_not_a_drop() -> None:
    c = run([(3, 10, 5), (3, 12, 7), (3, 11, 6), (3, 13, 7)])
    assert c.sflow_drops == 2
    assert c.sflow_sample_gaps == 1  # as for datagrams: the late one is not taken back


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([3, 4]), st.sampled_from([1, 1, 1, 2, 0, -1, 70_000]),
                          st.sampled_from([0, 0, 1, 5, -3, 1 << 25])), min_size=1, max_size=40),
       st.integers(1, 12))
def test_batched_accounting_equals_one_datagram_at_a_time(
        steps: list[tuple[int, int, int]], batch: int) -> None:
    """The numpy run check per batch counts exactly what the per-sample path counts."""
    top = 1 << 32
    seq = {3: top - 5, 4: 10}
    drops = {3: top - 9, 4: 0}
    samples = []
    for source, seq_step, drop_step in steps:
        seq[source] = (seq[source] + seq_step) % top
        drops[source] = (drops[source] + drop_step) % top
        samples.append((source, seq[source], drops[source]))
    one = run(samples)
    grams = [datagram([flow_sample([packet()], seq=sq, source=src, drops=dr)], seq=n)
             for n, (src, sq, dr) in enumerate(samples, 1)]
    d = Decoder()
    for i in range(0, len(grams), batch):
        d.decode_many([(g, EXPORTER) for g in grams[i:i + batch]], 1000.0)
    many = counters(d)
    assert (many.sflow_sample_gaps, many.sflow_drops) == (one.sflow_sample_gaps, one.sflow_drops)


def test_sources_are_kept_apart_per_sub_agent_and_exporter() -> None:
    d = Decoder()
    run([(3, 1, 0), (3, 2, 0)], decoder=d, sub_agent=0)
    run([(3, 500, 40), (3, 501, 41)], decoder=d, sub_agent=1)
    other = datagram([flow_sample([packet()], seq=900, drops=300)], seq=1)
    d.decode(other, "192.0.2.2", 1000.0)
    c = run([(3, 3, 0)], decoder=d, sub_agent=0)
    assert (c.sflow_sample_gaps, c.sflow_drops) == (0, 1)
    assert d.status.totals()["sflow_drops"] == 1
    assert d.status.totals()["sflow_sample_gaps"] == 0


def test_compact_and_expanded_samples_share_a_source() -> None:
    d = Decoder()
    run([((2 << 24) | 7, 1, 0)], decoder=d)
    c = run([((2 << 24) | 7, 3, 4)], decoder=d, expanded=True)
    assert (c.sflow_sample_gaps, c.sflow_drops) == (1, 4)


def test_samples_without_a_packet_record_still_count() -> None:
    d = Decoder()
    d.decode(datagram([flow_sample([packet()], seq=1)], seq=1), EXPORTER, 1000.0)
    d.decode(datagram([flow_sample([tlv(1003, gateway())], seq=2, drops=1)], seq=2),
             EXPORTER, 1000.0)
    d.decode(datagram([flow_sample([packet()], seq=3, drops=1)], seq=3), EXPORTER, 1000.0)
    c = counters(d)
    assert (c.sflow_sample_gaps, c.sflow_drops, c.records) == (0, 1, 2)


def test_status_table_shows_the_counters() -> None:
    from rich.console import Console

    from flowatlas.cli.collect_cmds import status_table

    d = Decoder()
    run([(3, 1, 0), (3, 4, 12_345)], decoder=d)
    console = Console(width=250, record=True)
    console.print(status_table(d.status))
    text = console.export_text()
    assert "sflow drops" in text and "12,345" in text and "sflow sample gaps" in text


# -- a real agent: pmacctd's sfprobe sends extended gateway records from a networks file -----

NETWORKS = {"10.1.0.0/16": 64501, "192.0.2.0/24": 64502, "2001:db8::/32": 64503}
"""One IPv6 network only: pmacctd 1.7.7 gave 2001:db8:ffff::2 the AS of 2001:db8::/48 when
2001:db8:ffff::/48 was listed too (seen in the record's bytes: pmacctd's lookup, not ours)."""


def _origin(addr: str) -> int:
    ip = ipaddress.ip_address(addr)
    return next((asn for net, asn in NETWORKS.items() if ip in ipaddress.ip_network(net)), 0)


@pytest.mark.peers
@pytest.mark.skipif(not has_tool("pmacctd"), reason="needs Debian package pmacct")
def test_pmacctd_sfprobe_gateway_as_numbers(tmp_path: Path) -> None:
    """sfprobe puts the networks file's AS numbers into an extended gateway record (one
    AS_SET segment holding the dst AS). collect_support.pmacctd takes no extra settings, hence
    the configuration here."""
    truth = write_pcap(tmp_path / "t.pcap", flows=40)
    (tmp_path / "nets").write_text("".join(f"{asn},{net}\n" for net, asn in NETWORKS.items()))
    with udp_sink() as sink:
        (tmp_path / "p.conf").write_text("\n".join([
            f"pcap_savefile: {tmp_path / 't.pcap'}", "plugins: sfprobe",
            "pcap_savefile_wait: false", "daemonize: false",
            f"sfprobe_receiver: 127.0.0.1:{sink.getsockname()[1]}",
            "sfprobe_agentip: 127.0.0.1", "sampling_rate: 1",
            f"networks_file: {tmp_path / 'nets'}", "pmacctd_as: file"]) + "\n")
        subprocess.run([shutil.which("pmacctd") or "/usr/sbin/pmacctd", "-f",
                        str(tmp_path / "p.conf")], capture_output=True, timeout=60, check=False)
        datagrams = [dg for dg, _ in drain(sink)]
    d = Decoder()
    t = d.decode_many([(dg, "127.0.0.1") for dg in datagrams], 1000.0)
    assert t is not None and t.num_rows >= 0.9 * sum(p for p, _ in truth.values())
    src, dst = unpack_many(t["src_addr"]), unpack_many(t["dst_addr"])
    got = set(zip(src, dst, t["src_as"].to_pylist(), t["dst_as"].to_pylist(), strict=True))
    assert got == {(s, d, _origin(s), _origin(d)) for s, d in zip(src, dst, strict=True)}
    assert {a for *_, a in got} == {64502, 64503}  # both families carried AS numbers
    c = d.status.of(pack("127.0.0.1"))
    assert (c.malformed, c.sflow_sample_gaps, c.sflow_drops) == (0, 0, 0)
