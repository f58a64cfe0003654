"""Datagrams from the encoder decode back to the same flows (collector Decoder and nfdump)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from flowatlas.addresses import unpack_many
from flowatlas.cli.main import cli
from flowatlas.collect import Decoder
from flowatlas.export import Encoder, UdpSender
from flowatlas.simulate import ScenarioConfig, SimConfig, Simulation

END = datetime(2026, 1, 15, tzinfo=UTC)
COMPARED = ["time_start", "time_end", "src_addr", "dst_addr", "src_port", "dst_port",
            "protocol", "tcp_flags", "packets", "bytes", "sampling_rate", "in_if", "out_if",
            "src_as", "dst_as"]


@pytest.fixture(scope="module")
def flows() -> pa.Table:
    config = SimConfig(seed=3, flows=20_000, days=2, end=END, sampling=(1, 100),
                       scenarios=ScenarioConfig.parse("c2=1,victims=2,relays=1,max_hops=2,cover=1,"
                                                      "enterprise=1,talkers=2"))
    return pa.Table.from_batches(list(Simulation(config).batches()))


def _sorted(table: pa.Table) -> pa.Table:
    return table.select(COMPARED).sort_by([(c, "ascending") for c in COMPARED])


@pytest.mark.parametrize("protocol", ["ipfix", "v9"])
def test_decoder_round_trip_over_udp(flows: pa.Table, protocol: str) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2)
    decoder = Decoder()
    got = []
    with UdpSender("127.0.0.1", receiver.getsockname()[1], rate=0) as sender:
        # Send in slices and drain between them so the loopback buffer never overflows.
        encoder = Encoder(protocol)
        for batch in flows.to_batches(max_chunksize=2_000):
            sender.send(encoder.encode(batch))
            for _ in range(sender.datagrams - len(got)):
                data, peer = receiver.recvfrom(65535)
                got.append(decoder.decode(data, exporter=peer[0], received_at=time.time()))
    receiver.close()
    decoded = pa.concat_tables([t for t in got if t is not None and t.num_rows])
    assert decoded.num_rows == flows.num_rows
    assert _sorted(decoded).equals(_sorted(flows))
    assert {100, 1} == set(decoded["sampling_rate"].to_numpy().tolist())


@pytest.mark.peers
@pytest.mark.skipif(shutil.which("nfcapd") is None, reason="nfdump (nfcapd) not installed")
def test_nfcapd_reads_ipfix(flows: pa.Table, tmp_path: Path) -> None:
    small = flows.filter(pa.compute.equal(flows["sampling_rate"], 1)).slice(0, 3_000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w", str(tmp_path),
                             "-t", "3600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        with UdpSender("127.0.0.1", port, rate=20_000) as sender:
            sender.send(Encoder("ipfix").encode(small))
        time.sleep(1.0)
    finally:
        proc.terminate()
        proc.wait(10)
    files = sorted(tmp_path.rglob("nfcapd.*"))
    assert files
    out = subprocess.run(["nfdump", "-q", "-o", "csv", "-R", str(tmp_path)],
                         capture_output=True, text=True, env={"TZ": "UTC"}, check=True).stdout
    rows = [line.split(",") for line in out.splitlines() if line and line[0].isdigit()]
    assert len(rows) == small.num_rows
    # csv: ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,...
    seen = {(r[3], r[4], int(r[5]), int(r[6]), int(r[11]), int(r[12])) for r in rows}
    want = set(zip(unpack_many(small["src_addr"]), unpack_many(small["dst_addr"]),
                   small["src_port"].to_pylist(), small["dst_port"].to_pylist(),
                   small["packets"].to_pylist(), small["bytes"].to_pylist(), strict=True))
    assert seen == want


@pytest.mark.slow
def test_cli_simulate_store_and_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["simulate", "--flows", "20000", "--days", "2", "--end", "2026-01-15", "--quiet",
            "--scenarios", "c2=1,victims=2,relays=1,max_hops=3,enterprise=0"]
    for name in ("a", "b"):
        result = runner.invoke(cli, [*args, "--store", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    a, b = (tmp_path / n / "ground-truth.json" for n in ("a", "b"))
    assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "a" / "ground-truth.prefixes.csv").exists()
    csv_path = tmp_path / "f.csv"
    result = runner.invoke(cli, [*args, "--csv", str(csv_path), "--truth",
                                 str(tmp_path / "t.json")])
    assert result.exit_code == 0, result.output
    assert csv_path.read_text().startswith("time_start,")
    exe = Path(sys.executable).with_name("flowatlas")
    for bad in (["--flows", "-1"], ["--sampling", "0"], ["--scenarios", "c9=1"],
                ["--udp", "localhost"], ["--days", "0"]):
        done = subprocess.run([str(exe), "simulate", *bad, "--store", str(tmp_path / "x")],
                              capture_output=True, text=True)
        assert done.returncode == 2, (bad, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and bad[0] in done.stderr
