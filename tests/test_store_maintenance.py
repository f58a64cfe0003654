"""Compaction, retention, purges and crash safety of the FlowStore."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from flowfactory import BASE_US, DAY_US, random_flows, row_keys

from flowatlas.addresses import parse_prefix
from flowatlas.atlas import Atlas
from flowatlas.store import FlowStore, StoreError


def _all_rows(store: FlowStore) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in store.snapshot().primary])


@pytest.mark.slow
def test_compaction_preserves_every_row_and_builds_both_copies(tmp_path: Path) -> None:
    store = FlowStore(tmp_path)
    truth = random_flows(30_000, seed=1, days=2)
    for start in range(0, 30_000, 3_000):
        store.append(truth.slice(start, 3_000))
    before = store.stats()
    report = store.compact(run_max_rows=8_000)
    after = store.stats()
    assert report.rows == truth.num_rows == after.rows == before.rows
    assert row_keys(_all_rows(store)) == row_keys(truth)
    snap = store.snapshot()
    assert not snap.ingest and len(snap.by_src) == len(snap.by_dst) >= 4
    by_dst = pa.concat_tables([pq.read_table(p) for p in snap.by_dst])
    assert row_keys(by_dst) == row_keys(truth)
    for path, key in [(snap.by_src[0], "src_addr"), (snap.by_dst[0], "dst_addr")]:
        col = pq.read_table(path).column(key).to_pylist()
        assert col == sorted(col)
    # A second compaction merges the undersized runs and still loses nothing.
    store.compact()
    assert row_keys(_all_rows(store)) == row_keys(truth)
    assert len(store.snapshot().by_src) == 2


def test_retention_deletes_only_expired_days(tmp_path: Path) -> None:
    store = FlowStore(tmp_path, retention_days=90)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    table = random_flows(5_000, seed=2, days=10, start_us=int(start.timestamp() * 1e6))
    store.append(table)
    now = start + timedelta(days=95, hours=12)   # cutoff: 2026-01-06
    deleted = store.retention(now=now)
    assert [d.isoformat() for d in deleted] == [f"2026-01-0{i}" for i in range(1, 6)]
    kept = _all_rows(store)
    cutoff = pa.scalar(datetime(2026, 1, 6, tzinfo=UTC))
    assert row_keys(kept) == row_keys(table.filter(pc.greater_equal(table.column("time_start"),
                                                                       cutoff)))
    assert store.retention(now=now) == []
    assert store.retention_days == 90


def test_delete_where_purges_opted_out_prefix_everywhere(tmp_path: Path) -> None:
    store = FlowStore(tmp_path)
    table = random_flows(20_000, seed=3)
    store.append(table.slice(0, 10_000))
    store.compact()
    store.append(table.slice(10_000))
    p = parse_prefix("10.0.0.0/10")
    low, high = pa.scalar(p.low, pa.binary(16)), pa.scalar(p.high, pa.binary(16))

    def hit(t: pa.Table) -> pa.ChunkedArray:
        def inside(c: str) -> pa.ChunkedArray:
            return pc.and_(pc.greater_equal(t.column(c), low), pc.less_equal(t.column(c), high))
        return pc.or_(inside("src_addr"), inside("dst_addr"))

    expected_removed = pc.sum(hit(table)).as_py()
    assert expected_removed > 0
    assert store.delete_where(hit) == expected_removed
    assert row_keys(_all_rows(store)) == row_keys(table.filter(pc.invert(hit(table))))
    with Atlas(store) as atlas:
        assert atlas.flows(atlas.select("net 10.0.0.0/10"), limit=100).num_rows == 0


def test_debris_of_interrupted_writes_never_breaks_reads(tmp_path: Path) -> None:
    store = FlowStore(tmp_path)
    table = random_flows(2_000, seed=4, days=1)
    store.append(table)
    day_dir = next(tmp_path.glob("day=*"))
    (day_dir / "ingest" / ".deadbeef.parquet.tmp").write_bytes(b"PAR1 half a file")
    (day_dir / "ingest" / "orphan.parquet").write_bytes(b"not parquet at all")
    (day_dir / ".manifest.json.123.tmp").write_text("{\"day\": ")
    with Atlas(store) as atlas:
        assert atlas.top(atlas.select(), by="proto").column("flows").to_pylist()
        assert sum(atlas.top(atlas.select(), by="proto", n=10).column("flows").to_pylist()) == 2_000
    old = time.time() - 3600
    for debris in (day_dir / "ingest").iterdir():
        os.utime(debris, (old, old))
    store.append(table)
    store.compact()
    names = {p.name for p in (day_dir / "ingest").iterdir()}
    assert "orphan.parquet" not in names and ".deadbeef.parquet.tmp" not in names
    assert store.stats().rows == 4_000


def test_a_writer_killed_mid_append_leaves_a_readable_store(tmp_path: Path) -> None:
    """SIGKILL a process that appends in a loop; every append it reported survives intact."""
    tests_dir = Path(__file__).parent
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tests_dir)!r})
        from flowfactory import random_flows
        from flowatlas.store import FlowStore
        store = FlowStore({str(tmp_path)!r})
        for i in range(1000):
            store.append(random_flows(20_000, seed=i, days=2))
            print(i, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    done = -1
    deadline = time.monotonic() + 60
    while done < 3 and time.monotonic() < deadline:
        done = int(proc.stdout.readline())
    # Let it get into the middle of the next write, then kill it without warning.
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rest = proc.stdout.read().split()
    completed = done + 1 + len(rest)
    store = FlowStore(tmp_path)
    rows = store.stats().rows
    assert rows in (completed * 20_000, (completed + 1) * 20_000)
    with Atlas(store) as atlas:
        total = atlas.top(atlas.select(), by="proto", n=10).column("flows").to_pylist()
    assert sum(total) == rows
    store.compact()
    assert store.stats().rows == rows


def test_opening_a_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no flowatlas store"):
        FlowStore(tmp_path / "nope", create=False)


def test_rows_land_in_their_utc_day(tmp_path: Path) -> None:
    store = FlowStore(tmp_path)
    t = random_flows(1_000, seed=5, days=1, start_us=BASE_US + DAY_US - 3_600_000_000)
    store.append(t)
    days = store.stats().days
    assert len(days) == 2
    for d in days:
        rows = pa.concat_tables(pq.read_table(tmp_path / f"day={d.day}" / f) for f in
                                store.manifest(d.day).live_files())  # type: ignore[union-attr]
        assert {ts.date() for ts in rows.column("time_start").to_pylist()} == {d.day}


def test_an_append_interrupted_after_its_journal_is_rolled_forward(tmp_path: Path) -> None:
    """Files written and journalled but not yet in the manifests appear on the next open."""
    import json

    store = FlowStore(tmp_path)
    table = random_flows(4_000, seed=6, days=3)
    published: list[object] = []
    store._publish = published.append  # type: ignore[method-assign]  # crash before publishing
    store.append(table)
    assert FlowStore(tmp_path).stats().rows == 0
    journal = tmp_path / ".journal"
    assert not any(journal.iterdir())  # this append removed its journal itself...
    entries = published[0]
    (journal / "pending.json").write_text(json.dumps(entries))  # ...so put one back: a crash
    reopened = FlowStore(tmp_path)
    assert reopened.stats().rows == 4_000
    assert row_keys(_all_rows(reopened)) == row_keys(table)
    assert not any(journal.iterdir())


def test_background_writer_appends_everything_and_surfaces_failures(tmp_path: Path) -> None:
    store = FlowStore(tmp_path)
    table = random_flows(9_000, seed=8, days=2)
    with store.writer(max_rows=1_000, max_seconds=60) as w:
        w.start_background()
        for start in range(0, 9_000, 500):
            w.write(table.slice(start, 500))
    assert w.rows_written == 9_000
    assert row_keys(_all_rows(store)) == row_keys(table)

    def broken(_: pa.Table) -> int:
        raise OSError("disk full")

    w = store.writer(max_rows=100, max_seconds=60)
    w.start_background()
    store.append = broken  # type: ignore[method-assign]
    w.write(table.slice(0, 200))
    with pytest.raises(OSError, match="disk full"):
        w.close()


def test_compact_due_takes_settled_days_and_full_runs_only(tmp_path: Path) -> None:
    store = FlowStore(tmp_path)
    first = datetime(2026, 3, 1, tzinfo=UTC)

    def flows(n: int, seed: int, day: int) -> pa.Table:
        return random_flows(n, seed=seed, days=1,
                            start_us=int((first + timedelta(days=day)).timestamp() * 1e6))

    for table in (flows(500, 5, 0), flows(300, 6, 2), flows(1_200, 7, 3)):
        store.append(table)
    total = store.stats().rows

    def fresh() -> dict[str, int]:
        return {d.day.isoformat(): d.ingest_files for d in store.stats().days}

    # 00:30 on 4 March: 1 March is long over, 3 March ended only 30 minutes ago (late flows may
    # still come), and 4 March already holds a full run (1,000 rows here).
    report = store.compact_due(first + timedelta(days=3, minutes=30), run_max_rows=1_000)
    assert report.days == 2 and report.rows == 1_700
    assert fresh() == {"2026-03-01": 0, "2026-03-03": 1, "2026-03-04": 0}
    report = store.compact_due(first + timedelta(days=3, minutes=61), run_max_rows=1_000)
    assert report.days == 1 and fresh()["2026-03-03"] == 0
    assert store.compact_due(first + timedelta(days=9), run_max_rows=1_000).days == 0
    assert store.stats().rows == total == 2_000
    assert row_keys(_all_rows(store)) == row_keys(pa.concat_tables(
        [flows(500, 5, 0), flows(300, 6, 2), flows(1_200, 7, 3)]))


@pytest.mark.slow
def test_serve_applies_retention_and_compacts_due_days(tmp_path: Path) -> None:
    """`serve --retention-every` on the real clock: an expired day goes, a settled day with
    fresh files is compacted, and today's few fresh rows are left for later."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    def flows(n: int, seed: int, days_ago: int) -> pa.Table:
        return random_flows(n, seed=seed, days=1,
                            start_us=int((today - timedelta(days=days_ago)).timestamp() * 1e6))

    store = FlowStore(tmp_path, retention_days=30)
    for table in (flows(400, 8, 200), flows(600, 9, 2), flows(50, 10, 0)):
        store.append(table)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from flowatlas.cli.main import main; main()", "serve",
         "--store", str(tmp_path), "--port", "0", "--retention-every", "0.3"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        settled = (today - timedelta(days=2)).date()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            days = {d.day: d for d in FlowStore(tmp_path).stats().days}
            if len(days) == 2 and days[settled].ingest_files == 0:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    days = {d.day: d for d in FlowStore(tmp_path).stats().days}
    assert (today - timedelta(days=200)).date() not in days, err
    assert days[settled].ingest_files == 0 and days[settled].runs == 1 and days[settled].rows == 600
    fresh = days[today.date()]
    assert fresh.rows == 50 and fresh.runs == 0 and fresh.ingest_files == 1
    assert "compacted 600 rows over 1 day in" in err
