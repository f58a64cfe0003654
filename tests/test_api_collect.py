"""``flowatlas serve --collect`` end to end: softflowd exports a capture as NetFlow v9 to the
server's UDP port, the flows are queried back over HTTP, and opted-out flows never arrive."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from collect_support import (
    RECENT_T0,
    free_port,
    has_tool,
    ipfix_message,
    ipfix_set,
    ipfix_template,
    softflowd,
    write_pcap,
)
from service_fixtures import free_port as free_tcp_port

from flowatlas.addresses import pack_many, parse_prefix
from flowatlas.collect.datagram import Decoder
from flowatlas.governance.controlplane import ControlPlane
from flowatlas.ingest import pipeline_for
from flowatlas.ranges import in_prefixes
from flowatlas.store import FlowStore

OPTED_OUT = "10.1.0.0/28"
CLI = [sys.executable, "-c", "from flowatlas.cli.main import main; main()"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def opted_out(address: str) -> bool:
    return bool(in_prefixes(pack_many([address]), [parse_prefix(OPTED_OUT)])[0])


@pytest.mark.peers
@pytest.mark.skipif(not has_tool("softflowd"), reason="needs the Debian package softflowd")
def test_serve_collect_stores_and_serves_flows_minus_optouts(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    truth = write_pcap(tmp_path / "traffic.pcap", flows=60)
    assert cli("store", "create", "--store", store).returncode == 0
    assert cli("sources", "add", "127.0.0.1", "--id", "5", "--partner", "lab",
               "--store", store).returncode == 0
    res = cli("optout", "add", OPTED_OUT, "--reason", "test", "--store", store)
    assert res.returncode == 0, res.stderr
    udp, http = free_port(), free_tcp_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--store", store, "--port", str(http), "--demo",
         "--collect", f"127.0.0.1:{udp}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stderr is not None
        key = ""
        while "serving" not in (line := proc.stderr.readline()):
            assert line, "server exited before serving"
            if "demo admin key" in line:
                key = line.rsplit(" ", 1)[1].strip()
        assert key.startswith("fa_")
        softflowd(tmp_path / "traffic.pcap", udp, 9, tmp_path)
        want = {k: v for k, v in truth.items() if not opted_out(k[0])}
        assert 0 < len(want) < len(truth)
        # The capture is from yesterday noon; ask for that span explicitly (rows arrive within
        # the collector's 2 s batch age; poll until they do).
        params = {"since": _iso(RECENT_T0 - 43_200), "until": _iso(RECENT_T0 + 86_400),
                  "limit": 1000}
        url = f"http://127.0.0.1:{http}/v1/flows"
        deadline = time.monotonic() + 30
        rows: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            try:
                r = httpx.get(url, params=params, headers={"X-API-Key": key}, timeout=10)
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            assert r.status_code == 200, r.text
            rows = r.json()["rows"]
            if len(rows) >= len(want):
                break
            time.sleep(0.3)
        got = {(x["src_addr"], x["dst_addr"], x["src_port"], x["dst_port"], x["protocol"]):
               [x["packets"], x["bytes"]] for x in rows}
        assert got == want
        assert {x["source_id"] for x in rows} == {5}
        # The collector's counters, as the service shows them to operators (the status file
        # is rewritten every 5 s; poll until it has counted what was stored).
        status: dict[str, object] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = httpx.get(f"http://127.0.0.1:{http}/v1/collector", headers={"X-API-Key": key},
                          timeout=10)
            assert r.status_code == 200, r.text
            status = r.json()
            exporters = (status.get("status") or {}).get("exporters", {})  # type: ignore[attr-defined]
            if exporters.get("127.0.0.1", {}).get("records", 0) >= len(truth):
                break
            time.sleep(0.5)
        assert status["running"] is True
        mine = status["status"]["exporters"]["127.0.0.1"]  # type: ignore[index]
        assert mine["records"] == len(truth)  # opt-outs are dropped after decoding
        assert mine["versions"] == [9] and mine["malformed"] == 0 and mine["sequence_gaps"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# IPFIX fields: src/dst IPv4, ports, protocol, packets, octets, start/end milliseconds.
FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 4), (1, 4), (152, 8), (153, 8)]


def record(i: int) -> bytes:
    t0 = int(RECENT_T0 * 1000)
    return struct.pack("!4s4sHHBIIQQ", bytes([10, 0, 0, i]), bytes([192, 0, 2, i]), 1000 + i, 80,
                       6, 3, 300, t0 + i, t0 + i + 50)


def test_ingest_pipeline_drops_opted_out_flows_before_they_are_stored(tmp_path: Path) -> None:
    """What the collector's ingest pipeline keeps of a decoded batch loses its opted-out flows,
    and the drops are counted by reason and exporter."""
    control = ControlPlane.for_store(tmp_path / "store")
    store = FlowStore(tmp_path / "store")
    pipeline = pipeline_for(store)
    template = ipfix_set(2, ipfix_template(300, FIELDS))
    msg = ipfix_message([template, ipfix_set(300, record(1) + record(2) + record(3))])
    decoded = Decoder().decode_many([(msg, "127.0.0.1")], RECENT_T0 + 100)
    assert decoded is not None and decoded.num_rows == 3
    with store.writer(max_rows=10, max_seconds=60) as w:
        w.write(pipeline(decoded))  # no opt-outs yet: all three kept
    control.db.execute("INSERT INTO optouts VALUES ('prefix', '10.0.0.1/32', 't', 1.0)")
    time.sleep(1.1)  # the stage re-reads the opt-outs at most once a second
    with store.writer(max_rows=10, max_seconds=60) as w:
        w.write(pipeline(decoded))
        w.write(pipeline(decoded.slice(0, 1)))  # only the opted-out flow: nothing to write
    stored = pa.concat_tables(pa.Table.from_batches([b]) for b in FlowStore(store.root).scan())
    src = stored.column("src_addr")
    assert stored.num_rows == 5
    assert int(in_prefixes(src, [parse_prefix("10.0.0.1")]).sum()) == 1  # the first batch only
    assert pipeline.drops.by_reason == {"opted_out": 2}
    assert pipeline.drops.by_exporter == {pack_many(["127.0.0.1"])[0].as_py(): {"opted_out": 2}}
    control.close()
