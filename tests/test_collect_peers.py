"""Real exporters (softflowd, pmacctd) into the collector, checked against the capture's ground
truth and against nfcapd/nfdump decoding the very same datagrams."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pytest
from collect_support import (
    FlowKey,
    drain,
    has_tool,
    nfcapd_decode,
    pmacctd,
    softflowd,
    udp_sink,
    write_pcap,
)

from flowatlas.addresses import unpack_many
from flowatlas.collect import Decoder

PROTO = {"TCP": 6, "UDP": 17}
EXPORTS = {"softflowd-v5": ("softflowd", 5), "softflowd-v9": ("softflowd", 9),
           "softflowd-ipfix": ("softflowd", 10), "pmacctd-ipfix": ("pmacctd", "nfprobe"),
           "pmacctd-sflow": ("pmacctd", "sfprobe")}

pytestmark = [pytest.mark.peers, pytest.mark.skipif(
    not all(has_tool(t) for t in ("softflowd", "pmacctd", "nfcapd", "nfdump")),
    reason="needs Debian packages softflowd, pmacct and nfdump",
)]


@pytest.fixture(scope="session")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[FlowKey, list[int]]]:
    d = tmp_path_factory.mktemp("pcap")
    truth = write_pcap(d / "traffic.pcap", flows=300)
    return d / "traffic.pcap", truth


@pytest.fixture(scope="session")
def exported(capture: tuple[Path, dict[FlowKey, list[int]]],
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    """Each exporter's datagrams for the capture, received once for all tests."""
    pcap, _ = capture
    work = tmp_path_factory.mktemp("exporters")
    out: dict[str, list[bytes]] = {}
    for name, (tool, arg) in EXPORTS.items():
        with udp_sink() as sink:
            port = sink.getsockname()[1]
            if tool == "softflowd":
                softflowd(pcap, port, int(arg), work)
            else:
                pmacctd(pcap, port, str(arg), work)
            out[name] = [d for d, _ in drain(sink)]
    return out


def decode_all(datagrams: list[bytes]) -> tuple[pa.Table, Decoder]:
    dec = Decoder()
    tables = [t for t in (dec.decode(d, "127.0.0.1", 1_700_000_100.0) for d in datagrams)
              if t is not None]
    assert tables, "no flows decoded"
    return pa.concat_tables(tables), dec


def per_key(table: pa.Table) -> dict[FlowKey, list[int]]:
    out: dict[FlowKey, list[int]] = defaultdict(lambda: [0, 0])
    rows = zip(unpack_many(table["src_addr"]), unpack_many(table["dst_addr"]),
               table["src_port"].to_pylist(), table["dst_port"].to_pylist(),
               table["protocol"].to_pylist(), table["packets"].to_pylist(),
               table["bytes"].to_pylist(), strict=True)
    for sa, da, sp, dp, pr, pk, by in rows:
        e = out[(sa, da, sp, dp, pr)]
        e[0] += pk
        e[1] += by
    return dict(out)


@pytest.mark.parametrize("name", ["softflowd-v5", "softflowd-v9", "softflowd-ipfix",
                                  "pmacctd-ipfix"])
def test_flow_exporters_match_ground_truth(name: str, exported: dict[str, list[bytes]],
                                           capture: tuple[Path, dict[FlowKey, list[int]]]) -> None:
    table, dec = decode_all(exported[name])
    got = per_key(table)
    truth = capture[1]
    if name == "softflowd-v5":  # NetFlow v5 cannot carry IPv6: softflowd drops it
        truth = {k: v for k, v in truth.items() if ":" not in k[0]}
    assert got == truth
    totals = dec.status.totals()
    assert totals["malformed"] == 0 and totals["lost"] == 0 and totals["unknown_template"] == 0


def test_sflow_samples_match_ground_truth(exported: dict[str, list[bytes]],
                                          capture: tuple[Path, dict[FlowKey, list[int]]]) -> None:
    table, dec = decode_all(exported["pmacctd-sflow"])
    got = per_key(table)
    truth = capture[1]
    assert set(got) <= set(truth)
    assert len(got) >= 0.95 * len(truth)  # sfprobe may miss a few packets at start-up
    complete = 0
    for key, (packets, octets) in got.items():
        assert packets <= truth[key][0]
        if packets == truth[key][0]:  # sFlow frame length: IP bytes + 14 header + 4 FCS
            assert octets == truth[key][1] + 18 * packets
            complete += 1
    assert complete >= 0.9 * len(truth)
    assert set(table["sampling_rate"].to_pylist()) == {1}
    assert dec.status.totals()["malformed"] == 0


@pytest.mark.parametrize("name", ["softflowd-v5", "softflowd-v9", "softflowd-ipfix",
                                  "pmacctd-ipfix"])
def test_same_datagrams_as_nfcapd(name: str, exported: dict[str, list[bytes]],
                                  tmp_path: Path) -> None:
    ours = per_key(decode_all(exported[name])[0])
    theirs: dict[FlowKey, list[int]] = defaultdict(lambda: [0, 0])
    for r in nfcapd_decode(exported[name], tmp_path):
        key = (r["sa"], r["da"], int(r["sp"]), int(r["dp"]), PROTO.get(r["pr"], -1))
        theirs[key][0] += int(r["ipkt"])
        theirs[key][1] += int(r["ibyt"])
    assert ours == dict(theirs)
