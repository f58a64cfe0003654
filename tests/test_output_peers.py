"""nfdump's output layouts (-o line/long/extended/fmt:) against Debian's nfdump on the very
same records: flows encoded as IPFIX, sent to a real nfcapd over loopback and printed by
nfdump, and decoded by flowatlas's collector from the same datagrams and printed by us."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from collect_support import free_port, has_tool

from flowatlas.addresses import pack_many
from flowatlas.collect import Decoder
from flowatlas.export import Encoder
from flowatlas.schema import conform

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(not all(has_tool(t) for t in ("nfcapd", "nfdump")),
                       reason="needs Debian package nfdump"),
]

T0 = datetime(2026, 11, 30, 5, 0, 0, tzinfo=UTC).timestamp()
# start offset s, duration s, src, dst, sport, dport, proto, flags, packets, bytes: zero and
# day-long durations, scaled counts (M, G, T), ICMP type.code, long IPv6 addresses, GRE.
RECORDS = [
    (0.123, 0.0, "10.0.0.1", "192.0.2.1", 12345, 443, 6, 0x1B, 10, 1500),
    (1.5, 65.25, "10.0.0.2", "192.0.2.200", 53, 53, 17, 0, 999_999, 999_999),
    (2.0, 3725.5, "10.0.0.3", "8.8.8.8", 40000, 8443, 6, 0x02, 1_000_000, 1_234_567_890),
    (3.0, 90000.001, "2001:db8::1", "2001:db8::2", 1, 2, 17, 0, 12, 34),
    (4.0, 1.0, "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1", "2001:db8:1234:5678:9abc:def0:1111:2222",
     5555, 80, 6, 0x3F, 5, 5_000_000_000),
    (5.0, 2.0, "203.0.113.255", "198.51.100.7", 0, 771, 1, 0, 3, 252),
    (6.0, 0.5, "10.255.255.254", "255.255.255.255", 65535, 65535, 47, 0, 15_000_000_000,
     15_000_000_000),
    (7.25, 7.0, "2001:db8:0:1::a", "2001:db8:0:1::b", 0, 0, 17, 0, 7, 7_000),
    (8.0, 3.3, "192.0.2.9", "192.0.2.10", 1024, 65000, 6, 0x12, 1_000, 999_999_999),
]
FORMATS = ["line", "long", "extended",
           "fmt:%ts %te %td %pr %sa %da %sp %dp %sas %das %in %out %pkt %byt %fl %flg %tos "
           "%bps %pps %bpp %ra",
           "fmt:%sap|%dap|%byt x %pkt"]


def _flows() -> pa.Table:
    us = pa.timestamp("us", tz="UTC")

    def col(i: int, typ: pa.DataType) -> pa.Array:
        return pa.array([r[i] for r in RECORDS], typ)

    return conform(pa.table({
        "time_start": pa.array([int((T0 + r[0]) * 1e6) for r in RECORDS], us),
        "time_end": pa.array([int((T0 + r[0] + r[1]) * 1e6) for r in RECORDS], us),
        "src_addr": pack_many([r[2] for r in RECORDS]),
        "dst_addr": pack_many([r[3] for r in RECORDS]),
        "src_port": col(4, pa.uint16()), "dst_port": col(5, pa.uint16()),
        "protocol": col(6, pa.uint8()), "tcp_flags": col(7, pa.uint8()),
        "packets": col(8, pa.uint64()), "bytes": col(9, pa.uint64()),
    }))


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    """(nfcapd's directory, our decoded table) for the same IPFIX datagrams."""
    datagrams = [d for d, _ in Encoder("ipfix").encode(_flows())]
    out = tmp_path_factory.mktemp("nfcapd")
    port = free_port()
    proc = subprocess.Popen(["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.4)  # nfcapd binds after start-up; there is no readiness signal
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for d in datagrams:
                s.sendto(d, ("127.0.0.1", port))
                time.sleep(0.001)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    dec = Decoder()
    tables = [t for t in (dec.decode(d, "127.0.0.1", T0 + 100) for d in datagrams)
              if t is not None]
    ours = pa.concat_tables(tables)
    assert ours.num_rows == len(RECORDS)
    return out, ours


def nfdump(directory: Path, fmt: str, quiet: bool = True) -> list[str]:
    args = ["nfdump", "-R", str(directory), "-o", fmt, *(["-q"] if quiet else [])]
    text = subprocess.run(args, capture_output=True, text=True, check=True,
                          env={**os.environ, "TZ": "UTC"}).stdout
    return text.splitlines()


@pytest.mark.parametrize("fmt", FORMATS)
def test_layouts_match_nfdump_line_for_line(both: tuple[Path, pa.Table], fmt: str) -> None:
    from flowatlas.formats import parse_format
    from flowatlas.formats.nfdump import Layout

    directory, ours = both
    template = parse_format(fmt, flows=True).template
    assert template is not None
    layout = Layout.parse(template)
    mine = [line.rstrip("\n") for line in layout.lines(ours).to_pylist()]
    theirs = nfdump(directory, fmt)
    assert sorted(mine) == sorted(theirs)
    header = nfdump(directory, fmt, quiet=False)[0]
    assert layout.header == header


def test_summary_line_matches_nfdump(both: tuple[Path, pa.Table]) -> None:
    import io

    from flowatlas.formats import open_output, parse_format

    directory, ours = both
    sink = io.BytesIO()
    writer = open_output(parse_format("line", flows=True), sink)
    for batch in ours.to_batches(max_chunksize=4):
        writer.write(batch)
    writer.close()
    mine = sink.getvalue().decode().splitlines()
    theirs = nfdump(directory, "line", quiet=False)
    assert mine[-1] == next(line for line in theirs if line.startswith("Summary:"))
