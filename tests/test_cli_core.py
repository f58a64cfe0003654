"""The CLI over a real store: queries, formats, import, and one-line errors with exit code 2."""

from __future__ import annotations

import csv
import io
import json
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from flowfactory import random_flows

from flowatlas.addresses import pack, unpack
from flowatlas.store import FlowStore, StoreError


def run(*args: str, store: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "flowatlas.cli", *args]
    if store is not None:
        cmd += ["--store", str(store)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-store")
    s = FlowStore(path)
    s.append(random_flows(20_000, seed=11))
    s.compact()
    return path


def test_query_csv_matches_filter(store: Path) -> None:
    table = random_flows(20_000, seed=11)
    addr = unpack(table.column("src_addr")[0].as_py())
    res = run("query", f"src ip {addr} and proto tcp", "-n", "100000", "--format", "csv", store=store)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    want = pc.sum(pc.and_(pc.equal(table.column("src_addr"), table.column("src_addr")[0]),
                          pc.equal(table.column("protocol"), 6))).as_py()
    assert len(rows) == want > 0
    assert {r["src_addr"] for r in rows} == {addr} and {r["protocol"] for r in rows} == {"6"}


def test_top_json_and_ip_profile(store: Path) -> None:
    res = run("top", "-s", "dst_port", "--order", "bytes", "-n", "3", "--format", "json", store=store)
    assert res.returncode == 0, res.stderr
    top = json.loads(res.stdout)
    assert len(top) == 3 and top[0]["bytes"] >= top[1]["bytes"] >= top[2]["bytes"]
    res = run("ip", top[0]["dst_port"] and "2001:db8::/32", "--format", "json", store=store)
    assert res.returncode == 0, res.stderr
    prof = json.loads(res.stdout)
    assert prof["address"] == "2001:db8::/32" and prof["first_seen"]
    assert {r["direction"] for r in prof["totals"]} <= {"in", "out"}


def test_table_output_on_terminal_format(store: Path) -> None:
    res = run("query", "proto udp", "-n", "5", store=store)
    assert res.returncode == 0, res.stderr
    assert "UDP" in res.stdout and "5 flows" in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("query", "ip", "10.0.0.300"), "filter error at column 4"),
        (("query", "port 80", "--since", "yesterday-ish"), "cannot read time"),
        (("top", "-s", "colour"), "unknown field 'colour'"),
        (("series", "--bin", "0m"), "cannot read duration"),
        (("ip", "not-an-ip"), "not an IP address or prefix"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(store: Path, args: tuple[str, ...], message: str) -> None:
    res = run(*args, store=store)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_store_exit_2(tmp_path: Path) -> None:
    res = run("query", store=tmp_path / "missing")
    assert res.returncode == 2 and "no flowatlas store" in res.stderr


@pytest.mark.slow
def test_store_stats_compact_retention(tmp_path: Path) -> None:
    s = FlowStore(tmp_path / "s")
    s.append(random_flows(3_000, seed=3))
    res = run("store", "compact", "--due", store=tmp_path / "s")  # past days: all settled
    assert res.returncode == 0 and "over 3 days (3,000 rows)" in res.stdout, res.stdout
    assert run("store", "compact", store=tmp_path / "s").returncode == 0
    res = run("store", "stats", "--format", "json", store=tmp_path / "s")
    stats = json.loads(res.stdout)
    assert stats[-1]["day"] == "total" and stats[-1]["rows"] == 3_000
    assert all(d["ingest_files"] == 0 for d in stats)
    res = run("store", "retention", "--days", "1", store=tmp_path / "s")
    assert res.returncode == 0 and "deleted 3 days" in res.stdout


@pytest.mark.slow
def test_store_settings_choose_the_ingest_codec(tmp_path: Path) -> None:
    path = tmp_path / "s"
    res = run("store", "settings", "--ingest-compression", "none", "--format", "json", store=path)
    assert res.returncode == 0, res.stderr
    assert {r["setting"]: r["value"] for r in json.loads(res.stdout)} == {
        "retention_days": "90", "ingest_compression": "none"}
    table = random_flows(2_000, seed=4, days=1)
    FlowStore(path).append(table)  # a new handle reads the setting from store.json
    snap = FlowStore(path).snapshot()
    codecs = {pq.ParquetFile(f).metadata.row_group(0).column(0).compression for f in snap.ingest}
    assert codecs == {"UNCOMPRESSED"}
    assert pq.read_table(snap.ingest[0]).num_rows == 2_000
    res = run("store", "settings", "--ingest-compression", "lz4", store=path)
    assert res.returncode == 0
    FlowStore(path).append(table)
    codecs = {pq.ParquetFile(f).metadata.row_group(0).column(0).compression
              for f in FlowStore(path).snapshot().ingest}
    assert codecs == {"UNCOMPRESSED", "LZ4"}
    res = run("store", "settings", "--ingest-compression", "brotli", store=path)
    assert res.returncode == 2 and "brotli" in res.stderr
    with pytest.raises(StoreError, match="brotli"):
        FlowStore(path, ingest_compression="brotli")
    assert FlowStore(path).ingest_compression == "lz4"
    res = run("store", "settings", store=tmp_path / "missing")
    assert res.returncode == 2 and "no flowatlas store" in res.stderr
    assert not (tmp_path / "missing").exists()


def test_import_canonical_csv_and_ndjson(tmp_path: Path) -> None:
    csv_path = tmp_path / "flows.csv"
    csv_path.write_text(
        "time_start,time_end,src_addr,dst_addr,src_port,dst_port,protocol,packets,bytes\n"
        "2026-11-01T10:00:00Z,2026-11-01T10:00:05Z,10.1.1.1,2001:db8::5,5000,443,tcp,3,1500\n"
        "2026-11-01 11:00:00,2026-11-01 11:00:01,10.1.1.2,10.9.9.9,53,53,17,1,80\n"
    )
    nd_path = tmp_path / "flows.ndjson"
    nd_path.write_text(json.dumps({"time_start": "2026-11-02T00:00:00+00:00", "src_addr": "::1",
                                   "dst_addr": "10.0.0.1", "bytes": 99}) + "\n")
    res = run("import", "--create", str(csv_path), str(nd_path), store=tmp_path / "s")
    assert res.returncode == 0, res.stderr
    assert "imported 3 flows" in res.stdout
    out = run("query", "--format", "ndjson", "--oldest-first", store=tmp_path / "s")
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["dst_addr"] for r in rows] == ["2001:db8::5", "10.9.9.9", "10.0.0.1"]
    assert rows[0]["protocol"] == 6 and rows[0]["time_end"] == "2026-11-01T10:00:05Z"
    assert rows[2]["packets"] == 1 and rows[2]["time_end"] == rows[2]["time_start"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time_start,src_addr,dst_addr,bytes\n2026-11-01T10:00:00,10.0.0.1,10.0.0.999,5\n",
         "not an IP address: '10.0.0.999'"),
        ("when,src_addr,dst_addr,bytes\n1,1,1,1\n", "header lacks required column(s) time_start"),
        ("time_start,src_addr,dst_addr,bytes,colour\n2026-11-01,10.0.0.1,10.0.0.2,5,red\n",
         "unknown column(s) colour"),
        ("time_start,src_addr,dst_addr,bytes\n2026-11-01,10.0.0.1,10.0.0.2,lots\n", "bytes"),
    ],
)
def test_bad_import_names_the_problem_and_stores_nothing(tmp_path: Path, content: str,
                                                         message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    res = run("import", "--create", str(path), store=tmp_path / "s")
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "bad.csv" in res.stderr
    assert FlowStore(tmp_path / "s").stats().rows == 0


def _pcap(path: Path) -> None:
    """A small capture: two TCP conversations, one UDP exchange, IPv4."""
    def ip4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
        return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                           socket.inet_aton(src), socket.inet_aton(dst)) + payload

    def tcp(sp: int, dp: int, flags: int, data: bytes) -> bytes:
        return struct.pack("!HHIIBBHHH", sp, dp, 1, 0, 5 << 4, flags, 1000, 0, 0) + data

    def udp(sp: int, dp: int, data: bytes) -> bytes:
        return struct.pack("!HHHH", sp, dp, 8 + len(data), 0) + data

    frames = []
    t0 = (int(time.time()) // 86_400 - 1) * 86_400 + 43_200  # yesterday noon: a plausible time
    for i in range(6):
        frames.append((t0 + i, ip4("10.1.2.3", "192.0.2.9", 6, tcp(40000, 443, 0x18, b"x" * 100))))
        frames.append((t0 + i, ip4("192.0.2.9", "10.1.2.3", 6, tcp(443, 40000, 0x12, b"y" * 40))))
        frames.append((t0 + i, ip4("10.7.7.7", "198.51.100.1", 17, udp(5353, 6000, b"q" * 30))))
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, pkt in frames:
            frame = b"\x00" * 12 + b"\x08\x00" + pkt
            fh.write(struct.pack("<IIII", ts, 0, len(frame), len(frame)) + frame)


@pytest.mark.peers
@pytest.mark.skipif(shutil.which("nfpcapd") is None, reason="nfdump tools are installed by .ci/run")
def test_import_real_nfdump_csv(tmp_path: Path) -> None:
    """nfpcapd turns a capture into an nfcapd file; nfdump -o csv prints it; we import that."""
    _pcap(tmp_path / "a.pcap")
    (tmp_path / "nf").mkdir()
    subprocess.run(["nfpcapd", "-r", str(tmp_path / "a.pcap"), "-l", str(tmp_path / "nf")],
                   check=True, capture_output=True, timeout=60)
    nffile = next((tmp_path / "nf").rglob("nfcapd.*"))
    dump = subprocess.run(["nfdump", "-r", str(nffile), "-o", "csv"], check=True,
                          capture_output=True, text=True, env={"TZ": "UTC"}, timeout=60).stdout
    (tmp_path / "nf.csv").write_text(dump)
    res = run("import", "--create", str(tmp_path / "nf.csv"), store=tmp_path / "s")
    assert res.returncode == 0, res.stderr
    out = run("query", "--format", "json", store=tmp_path / "s")
    got = {(r["src_addr"], r["dst_addr"], r["src_port"], r["dst_port"], r["protocol"]):
           (r["packets"], r["bytes"], r["tcp_flags"]) for r in json.loads(out.stdout)}
    assert got == {
        ("10.1.2.3", "192.0.2.9", 40000, 443, 6): (6, 6 * 140, 0x18),
        ("192.0.2.9", "10.1.2.3", 443, 40000, 6): (6, 6 * 80, 0x12),
        ("10.7.7.7", "198.51.100.1", 5353, 6000, 17): (6, 6 * 58, 0),
    }
    assert pack("10.1.2.3")
