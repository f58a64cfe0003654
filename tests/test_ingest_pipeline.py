"""The ingest pipeline: values the store cannot hold, implausible times, a failing writer.

Issue 18.1/18.2: one IPFIX record dated year 10000 used to kill the collector's writer thread
and every valid record of its batch with it; flows dated 9999-12-31 were stored and then broke
``query --since 30d``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from collect_support import RECENT_T0, free_port, ipfix_message, ipfix_set, ipfix_template
from test_collect_decoder import BASIC

from flowatlas.addresses import pack_many, unpack_many
from flowatlas.collect.datagram import Decoder
from flowatlas.collect.server import Collector, CollectorFailed, Listen
from flowatlas.collect.status import STATUS_FILE, published
from flowatlas.ingest import ENRICHMENT, Pipeline, pipeline_for
from flowatlas.ingest.stages import DropCounts, PlausibilityStage
from flowatlas.schema import FLOW_SCHEMA
from flowatlas.store import FlowStore, StoreError
from flowatlas.store.flowstore import day_of

CLI = [sys.executable, "-c", "from flowatlas.cli.main import main; main()"]
YEAR_10000_MS = 253_402_300_800_000
"""flowStartMilliseconds of 10000-01-01T00:00:00Z: the datagram of issue 18.1."""
RECENT_MS = int(RECENT_T0 * 1000)


def rec(i: int, start_ms: int = RECENT_MS, end_ms: int | None = None) -> bytes:
    """One record of test_collect_decoder's BASIC template (src 10.0.0.i)."""
    end = start_ms + 50 if end_ms is None else end_ms
    return struct.pack("!4s4sHHBIIQQ", bytes([10, 0, 0, i]), bytes([192, 0, 2, i]), 1000 + i, 80,
                       6, 3, 300, start_ms + i, end + i)


def msg(*records: bytes, seq: int = 0) -> bytes:
    return ipfix_message([ipfix_set(2, ipfix_template(300, BASIC)),
                          ipfix_set(300, b"".join(records))], seq=seq)


def test_hostile_times_over_loopback_are_counted_and_collection_goes_on(tmp_path: Path) -> None:
    store = tmp_path / "store"
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "collect", "--store", str(store), "--accept-unregistered", "--listen",
         f"127.0.0.1:{port}", "--batch-seconds", "0.1", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stderr is not None
        assert "listening" in proc.stderr.readline()
        year_9999 = int(datetime(9999, 12, 31, tzinfo=UTC).timestamp() * 1000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            # The hostile record sits between valid ones in one datagram and one batch.
            s.sendto(msg(rec(1), rec(2, YEAR_10000_MS), rec(3)), ("127.0.0.1", port))
            s.sendto(msg(rec(4, year_9999), rec(5, 0), rec(6), seq=3), ("127.0.0.1", port))
            time.sleep(1.0)  # the batch is written; the collector must survive its next write
            s.sendto(msg(rec(7), rec(8, RECENT_MS, YEAR_10000_MS + 1), seq=6), ("127.0.0.1", port))
            time.sleep(1.0)
            assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "4 flows stored" in err and "4 dropped at ingest" in err, err
    stored = pa.concat_tables(pa.Table.from_batches([b]) for b in FlowStore(store).scan())
    assert sorted(unpack_many(stored.column("src_addr"))) == [f"10.0.0.{i}" for i in (1, 3, 6, 7)]
    status = json.loads((store / STATUS_FILE).read_text())
    mine = status["exporters"]["127.0.0.1"]
    assert mine["records"] == 8 and mine["dropped"] == 4
    assert mine["reasons"] == {"time_unholdable": 2, "time_in_future": 1, "time_too_old": 1}
    assert status["state"] == "stopped" and status["error"] is None
    assert [d.year for d in FlowStore(store).days()] == [datetime.fromtimestamp(RECENT_T0).year]


def _send_until(port: int, datagram: bytes, done: threading.Event, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        while not done.is_set() and time.monotonic() < deadline:
            s.sendto(datagram, ("127.0.0.1", port))
            time.sleep(0.2)


def test_a_failing_store_stops_the_collector_visibly_and_loses_nothing(tmp_path: Path) -> None:
    store = FlowStore(tmp_path / "store")
    real_append = store.append

    def disk_full(_: object) -> int:
        raise OSError(28, "No space left on device")

    store.append = disk_full  # type: ignore[method-assign,assignment]
    port = free_port()
    status_path = tmp_path / "store" / STATUS_FILE
    collector = Collector(store, [Listen("127.0.0.1", port)], Decoder(), max_seconds=0.05,
                          status_path=status_path)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            collector.run()
        except BaseException as exc:  # the collector's own thread reports it
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    done = threading.Event()
    sender = threading.Thread(target=_send_until, args=(port, msg(rec(1), rec(2)), done))
    sender.start()
    thread.join(20)
    done.set()
    sender.join()
    assert not thread.is_alive(), "the collector did not stop when its store failed"
    assert len(failures) == 1 and isinstance(failures[0], CollectorFailed)
    assert "No space left on device" in str(failures[0])
    seen = published(status_path)
    assert seen["running"] is False and "No space left" in seen["error"]
    assert seen["status"]["state"] == "failed"
    saved = list((tmp_path / "store").glob("unwritten-*.arrow"))
    assert len(saved) == 1 and seen["status"]["unwritten"] == str(saved[0])
    accepted = collector.decoder.status.totals()["records"]
    assert accepted >= 4

    # Every record the failed collector decoded is stored by the next one, exactly once.
    store.append = real_append  # type: ignore[method-assign]
    again = Collector(store, [Listen("127.0.0.1", free_port())], Decoder(),
                      status_path=status_path)
    again.stop()
    again.run()
    assert again.replayed == accepted and again.stored == accepted
    assert store.stats().rows == accepted
    assert not list((tmp_path / "store").glob("unwritten-*.arrow"))
    assert published(status_path)["status"]["state"] == "stopped"


def test_collect_exits_non_zero_when_the_store_fails(tmp_path: Path) -> None:
    """``flowatlas collect`` on a store whose day directory cannot be created: exit 1, a
    one-line reason, and the accepted flows kept for the next start."""
    store = tmp_path / "store"
    FlowStore(store)
    day = date.fromtimestamp(RECENT_T0)
    (store / f"day={day.isoformat()}").write_text("not a directory")
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "collect", "--store", str(store), "--accept-unregistered", "--listen",
         f"127.0.0.1:{port}", "--batch-seconds", "0.1", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stderr is not None
        assert "listening" in proc.stderr.readline()
        done = threading.Event()
        sender = threading.Thread(target=_send_until, args=(port, msg(rec(1)), done))
        sender.start()
        try:
            proc.wait(20)
        finally:
            done.set()
            sender.join()
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "writing to the store failed" in err
    assert len(list(store.glob("unwritten-*.arrow"))) == 1


def _flows(starts_us: list[int], ends_us: list[int] | None = None,
           exporter: str = "192.0.2.1") -> pa.Table:
    n = len(starts_us)
    addr = pack_many(["10.0.0.1"] * n)
    return pa.table({
        "time_start": pa.array(starts_us, pa.int64()).cast(FLOW_SCHEMA.field("time_start").type),
        "time_end": pa.array(ends_us or starts_us, pa.int64()).cast(
            FLOW_SCHEMA.field("time_end").type),
        "src_addr": addr, "dst_addr": addr, "bytes": pa.array([1] * n, pa.uint64()),
        "exporter": pack_many([exporter] * n),
    })


def test_plausibility_counts_each_reason_per_exporter() -> None:
    now = 1_800_000_000.0
    now_us = int(now * 1e6)
    day_us = 86_400 * 1_000_000
    stage = PlausibilityStage(past_seconds=10 * 86_400, future_seconds=86_400, clock=lambda: now)
    i64 = np.iinfo(np.int64)
    starts = [now_us, now_us - 11 * day_us, now_us + 2 * day_us, int(i64.max), int(i64.min),
              now_us - 9 * day_us, YEAR_10000_MS * 1000]
    drops = DropCounts()
    kept = stage(_flows(starts), drops)
    assert kept.column("time_start").cast(pa.int64()).to_pylist() == [now_us, now_us - 9 * day_us]
    assert drops.by_reason == {"time_too_old": 1, "time_in_future": 1, "time_unholdable": 3}
    assert drops.by_exporter == {pack_many(["192.0.2.1"])[0].as_py(): drops.by_reason}
    # An end time far ahead is as implausible as a start time.
    drops = DropCounts()
    assert stage(_flows([now_us], [now_us + 3 * day_us]), drops).num_rows == 0
    assert drops.by_reason == {"time_in_future": 1}


def test_pipeline_runs_its_slots_in_order_and_enrichment_plugs_in(tmp_path: Path) -> None:
    store = FlowStore(tmp_path / "s")
    pipeline = pipeline_for(store, clock=lambda: RECENT_T0)
    seen: list[int] = []

    class Tagger:
        name = "tagger"

        def __call__(self, table: pa.Table, drops: DropCounts) -> pa.Table:
            seen.append(table.num_rows)  # runs after the drops: only kept rows are enriched
            return table

    pipeline.plug(ENRICHMENT, Tagger())
    assert [s.name for s in pipeline.stages] == ["plausibility", "optout", "sampling", "enrichment",
                                                "tagger"]
    now_us = int(RECENT_T0 * 1e6)
    table = _flows([now_us, 0, now_us]).append_column(
        "sampling_rate", pa.array([0, 5, 7], pa.uint32()))
    assert pipeline.append(store, table) == 2
    assert seen == [2]
    assert pipeline.drops.by_reason == {"time_too_old": 1}
    assert pipeline.drops.normalised == {"sampling_rate_0": 1}
    stored = pa.concat_tables(pa.Table.from_batches([b]) for b in store.scan())
    assert sorted(stored.column("sampling_rate").to_pylist()) == [1, 7]
    with pytest.raises(ValueError, match="no ingest slot"):
        Pipeline().plug("later", Tagger())


def test_day_of_takes_any_int64_and_append_refuses_unholdable_times(tmp_path: Path) -> None:
    i64 = np.iinfo(np.int64)
    for ts in (int(i64.min), -62_135_596_800_000_001, 0, YEAR_10000_MS * 1000, int(i64.max)):
        day_of(ts)
    assert day_of(0) == date(1970, 1, 1) and day_of(-1) == date(1969, 12, 31)
    assert day_of(int(i64.max)) == date.max and day_of(int(i64.min)) == date.min
    store = FlowStore(tmp_path / "s")
    with pytest.raises(StoreError, match="cannot be stored"):
        store.append(_flows([int(RECENT_T0 * 1e6), YEAR_10000_MS * 1000]))
    assert store.stats().rows == 0 and store.days() == []


def test_query_survives_extreme_days_already_in_a_store(tmp_path: Path) -> None:
    """A store written before plausibility checks may hold 9999-12-31 and 0001-01-01."""
    store = FlowStore(tmp_path / "s")
    first = int(datetime(1, 1, 1, tzinfo=UTC).timestamp() * 1e6)
    last = int(datetime(9999, 12, 31, 23, tzinfo=UTC).timestamp() * 1e6)
    store.append(_flows([first, last, int(RECENT_T0 * 1e6)]))
    for args in (["--since", "30d", "any"], ["any"], ["--oldest-first", "any"]):
        res = subprocess.run([*CLI, "query", "--store", str(tmp_path / "s"), "--format", "json",
                              *args], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert "Traceback" not in res.stderr
    rows = json.loads(res.stdout)
    assert len(rows) == 3


def test_simulate_udp_with_flowatlas_store_set_writes_only_udp(tmp_path: Path) -> None:
    """Issue 19.2: FLOWATLAS_STORE (the demo sets it) must not make ``simulate --udp`` write
    every flow into the store as well, nor overwrite the store's ground truth."""
    from collect_support import drain, udp_sink

    store = tmp_path / "store"
    FlowStore(store)
    (store / "ground-truth.json").write_text('{"the": "14-day truth"}')
    env = {**os.environ, "FLOWATLAS_STORE": str(store)}
    args = ["simulate", "--flows", "3000", "--days", "1", "--rate", "0", "--quiet",
            "--scenarios", "none"]
    with udp_sink() as sink:
        target = f"127.0.0.1:{sink.getsockname()[1]}"
        res = subprocess.run([*CLI, *args, "--udp", target], capture_output=True, text=True,
                             timeout=120, env=env, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert drain(sink)
    assert FlowStore(store).stats().rows == 0
    assert json.loads((store / "ground-truth.json").read_text()) == {"the": "14-day truth"}
    assert (tmp_path / "ground-truth.json").exists()
    # An explicit --store still means both.
    with udp_sink() as sink:
        target = f"127.0.0.1:{sink.getsockname()[1]}"
        res = subprocess.run([*CLI, *args, "--udp", target, "--store", str(store)],
                             capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert drain(sink)
    assert FlowStore(store).stats().rows > 0
    assert "written" in json.loads((store / "ground-truth.json").read_text())["flows"]
