"""`flowatlas collect` as a process: IPv4 and IPv6 sockets, registry, store writes, SIGTERM."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest
from collect_support import RECENT_T0, free_port, ipfix_message, ipfix_set, ipfix_template
from test_collect_decoder import BASIC

from flowatlas.store import FlowStore


def basic_record(i: int, start_ms: int = int(RECENT_T0 * 1000)) -> bytes:
    """test_collect_decoder's BASIC record, dated yesterday (inside the plausible window)."""
    return struct.pack("!4s4sHHBIIQQ", bytes([10, 0, 0, i]), bytes([192, 0, 2, i]), 1000 + i, 80,
                       6, 3, 300, start_ms + i, start_ms + i + 50)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from flowatlas.cli.main import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=60)


def test_sources_commands(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    missing = run_cli("sources", "add", "192.0.2.0/24", "--id", "7", "--partner", "Example",
                      "--store", store)
    assert missing.returncode == 2 and "no flowatlas store at" in missing.stderr
    assert not Path(store).exists()  # a mistyped --store never becomes a store
    assert run_cli("store", "create", "--store", store).returncode == 0
    ok = run_cli("sources", "add", "192.0.2.0/24", "--id", "7", "--partner", "Example",
                 "--store", store)
    assert ok.returncode == 0, ok.stderr
    listed = run_cli("sources", "list", "--format", "csv", "--store", store)
    rows = list(csv.DictReader(io.StringIO(listed.stdout)))
    assert [(r["prefix"], r["source_id"], r["partner"]) for r in rows] == [
        ("192.0.2.0/24", "7", "Example")]
    bad = run_cli("sources", "add", "not-an-ip", "--id", "1", "--partner", "x", "--store", store)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not-an-ip" in bad.stderr
    assert run_cli("sources", "remove", "7", "--store", store).returncode == 0
    assert run_cli("sources", "remove", "7", "--store", store).returncode == 2


@pytest.mark.slow
def test_collect_stores_registered_flows_and_flushes_on_sigterm(tmp_path: Path) -> None:
    store = tmp_path / "store"
    FlowStore(store)
    assert run_cli("sources", "add", "127.0.0.1", "--id", "3", "--partner", "lab",
                   "--store", str(store)).returncode == 0
    p4, p6 = free_port(), free_port(socket.AF_INET6)
    code = "from flowatlas.cli.main import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "collect", "--store", str(store), "--listen",
         f"127.0.0.1:{p4}", "--listen", f"[::1]:{p6}", "--batch-seconds", "600"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "listening" in line, line
        msg = ipfix_message([ipfix_set(2, ipfix_template(300, BASIC)),
                             ipfix_set(300, basic_record(1) + basic_record(2))])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4:
            s4.sendto(msg, ("127.0.0.1", p4))
            s4.sendto(b"\x00\x0a garbage", ("127.0.0.1", p4))
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:
            s6.sendto(msg, ("::1", p6))  # ::1 is not registered: counted, not stored
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "2 flows stored" in err and "1 malformed" in err
    assert FlowStore(store).stats().rows == 2
    status = json.loads((store / "collector-status.json").read_text())
    assert status["exporters"]["::1"]["unregistered"] == 1
    assert status["exporters"]["127.0.0.1"]["records"] == 2
    assert (store / "collector-state.json").exists()
    scanned = list(FlowStore(store).scan())
    assert sum(b.num_rows for b in scanned) == 2
    assert pc.unique(scanned[0]["source_id"]).to_pylist() == [3]
