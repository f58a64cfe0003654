"""The Service object: it owns the Atlas, the control plane, the gate, the collector thread and
the maintenance schedule, builds them from the settings, and stops cleanly."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from flowfactory import random_flows

from flowatlas.export.encoder import Encoder
from flowatlas.export.sender import UdpSender
from flowatlas.governance.audit import AuditLog
from flowatlas.governance.optout import OptOuts
from flowatlas.governance.sources import SourceRegistry
from flowatlas.service import Service, ServiceError
from flowatlas.settings import Settings
from flowatlas.store import FlowStore


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_collector_thread_stores_flows_minus_optouts_with_the_settings(tmp_path: Path) -> None:
    FlowStore(tmp_path)
    SourceRegistry.for_store(tmp_path).add("127.0.0.1", 7, "lab")
    yesterday = datetime.now(UTC) - timedelta(days=1)  # inside the plausible window
    flows = random_flows(300, seed=3, days=1, v6_share=0.0,
                         start_us=int(yesterday.timestamp() * 1e6))
    dropped = flows.column("src_addr")[0].as_py()
    settings = Settings().with_values({
        "collector.batch_rows": 100, "collector.batch_seconds": 0.1,
        "collector.receive_buffer": 1 << 20, "engine.memory_limit": "300MB",
        "engine.threads": 1,
    })
    port = free_udp_port()
    with Service(tmp_path, settings=settings, collect=[f"127.0.0.1:{port}"],
                 report=lambda _: None) as service:
        OptOuts(service.control, service.audit).add(
            f"{socket.inet_ntoa(dropped[12:])}/32", "test", None)
        assert service.collector is not None and service.collector.writer.max_rows == 100
        con = service.atlas.engine._con  # type: ignore[attr-defined]
        assert con.execute("SELECT current_setting('threads')").fetchone()[0] == 1
        assert "MiB" in con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        time.sleep(1.2)  # the opt-out filter re-reads the list once a second
        with UdpSender("127.0.0.1", port) as sender:
            sender.send(Encoder("ipfix").encode(flows))
        hit = pc.or_(pc.equal(flows.column("src_addr"), pa.scalar(dropped, pa.binary(16))),
                     pc.equal(flows.column("dst_addr"), pa.scalar(dropped, pa.binary(16))))
        want = flows.num_rows - int(pc.sum(hit).as_py())
        assert 0 < want < flows.num_rows
        deadline = time.monotonic() + 20
        while FlowStore(tmp_path).stats().rows < want and time.monotonic() < deadline:
            time.sleep(0.1)
        thread = service._collector_thread
    assert thread is not None and not thread.is_alive()
    stored = pa.Table.from_batches(list(FlowStore(tmp_path).scan()))
    assert stored.num_rows == want
    assert dropped not in set(stored.column("src_addr").to_pylist())
    assert dropped not in set(stored.column("dst_addr").to_pylist())
    assert set(stored.column("source_id").to_pylist()) == {7}


def test_maintain_applies_retention_and_audits_it(tmp_path: Path) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    store = FlowStore(tmp_path, retention_days=30)
    old = today - timedelta(days=100)
    store.append(random_flows(100, seed=1, days=1, start_us=int(old.timestamp() * 1e6)))
    store.append(random_flows(100, seed=2, days=1,
                              start_us=int((today - timedelta(days=3)).timestamp() * 1e6)))
    lines: list[str] = []
    service = Service(tmp_path, report=lines.append)
    try:
        assert service.settings.store.retention_days == 30
        service.maintain()
        assert old.date() not in FlowStore(tmp_path).days()
        entries = [e for e in AuditLog(service.control, time.time).entries()
                   if e["route"] == "retention"]
        assert entries and entries[0]["actor"] == "retention"
        assert entries[0]["params"]["days"] == [old.date().isoformat()]
        assert any("compacted 100 rows over 1 day" in line for line in lines)
    finally:
        service.stop()
        service.stop()  # twice is harmless


def test_bad_collect_endpoint_and_missing_store(tmp_path: Path) -> None:
    FlowStore(tmp_path / "s")
    with pytest.raises(ServiceError, match="collect: not a listen address"):
        Service(tmp_path / "s", collect=["nowhere"])
    from flowatlas.store import StoreError

    with pytest.raises(StoreError, match="no flowatlas store"):
        Service(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


def test_serve_and_collect_take_their_settings(tmp_path: Path) -> None:
    """`serve` listens where the settings say (here: the environment), and a bad setting stops
    `serve` and `collect` with one line naming it (exit 2), before anything is created."""
    import os
    import signal
    import subprocess
    import sys

    import httpx
    from service_fixtures import free_port

    cli = [sys.executable, "-m", "flowatlas.cli"]
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "FLOWATLAS_SERVICE_PORT": str(port)}
    proc = subprocess.Popen([*cli, "serve", "--store", str(tmp_path / "s"), "--demo"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        while "serving" not in (line := proc.stderr.readline()):
            assert line, "serve exited before serving"
        assert f"http://127.0.0.1:{port}" in line
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json() == {
                    "status": "ok"}
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    for command in (["serve"], ["collect", "--listen", "127.0.0.1:0"]):
        bad = {**os.environ, "FLOWATLAS_ENGINE_MEMORY_LIMIT": "plenty",
               "FLOWATLAS_COLLECTOR_BATCH_ROWS": "0"}
        res = subprocess.run([*cli, *command, "--store", str(tmp_path / "new")],
                             capture_output=True, text=True, env=bad, timeout=60)
        assert res.returncode == 2, res.stderr
        assert "(from FLOWATLAS_" in res.stderr and len(res.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "new").exists()


class Recorder:
    """A component that notes when it runs (what a job runner's lifecycle looks like)."""

    def __init__(self, name: str, log: list[str], fail_stop: bool = False) -> None:
        self.name, self.log, self.fail_stop = name, log, fail_stop

    def start(self, service: Service) -> None:
        assert service.gate is not None and service.atlas is not None
        self.log.append(f"start {self.name}")

    def stop(self) -> None:
        self.log.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError("stuck")


def test_attached_components_start_after_and_stop_before_the_service(tmp_path: Path) -> None:
    FlowStore(tmp_path)
    log: list[str] = []
    reports: list[str] = []
    service = Service(tmp_path, report=reports.append)
    service.attach(Recorder("jobs", log, fail_stop=True))
    assert log == []  # attached, not started
    with service:
        assert log == ["start jobs"]
        service.attach(Recorder("console", log))
        assert log == ["start jobs", "start console"]  # the service runs: started at once
    assert log == ["start jobs", "start console", "stop console", "stop jobs"]
    assert reports == ["stopping Recorder failed: stuck"]
    assert service._maintenance_thread is not None and not service._maintenance_thread.is_alive()
    with pytest.raises(ServiceError, match="stopped"):
        service.start()
