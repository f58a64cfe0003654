"""Disk is given back (issue 18.6): files replaced by compaction or purges go once their grace
period has passed, whatever runs next (a write, a compaction, retention, or opening the store),
and `store stats` shows live and retired bytes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from flowfactory import random_flows

from flowatlas.cli.main import cli
from flowatlas.store import FlowStore
from flowatlas.store.flowstore import RETIRE_GRACE_SECONDS

T0 = datetime(2026, 1, 10, tzinfo=UTC)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _files_on_disk(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.glob("day=*/*/*.parquet")}


def _store(root: Path, clock: Clock) -> FlowStore:
    return FlowStore(root, clock=clock)


def _compacted(root: Path, clock: Clock) -> tuple[FlowStore, set[str]]:
    """Two days appended in pieces and compacted: the ingest files are retired."""
    store = _store(root, clock)
    flows = random_flows(4_000, seed=3, days=2, start_us=int(T0.timestamp() * 1e6))
    for start in range(0, 4_000, 1_000):
        store.append(flows.slice(start, 1_000))
    ingest = _files_on_disk(root)
    store.compact()
    assert ingest <= _files_on_disk(root)  # still there: a reader may hold the old manifest
    stats = store.stats()
    assert stats.retired_files == len(ingest) and stats.retired_bytes > 0
    return store, ingest


def test_retired_files_stay_within_their_grace(tmp_path: Path) -> None:
    clock = Clock(T0.timestamp())
    store, ingest = _compacted(tmp_path, clock)
    clock.now += RETIRE_GRACE_SECONDS - 1
    store.append(random_flows(10, seed=4, days=1, start_us=int(T0.timestamp() * 1e6)))
    _store(tmp_path, clock)
    assert ingest <= _files_on_disk(tmp_path)


def test_a_write_after_the_grace_removes_them(tmp_path: Path) -> None:
    """The red team's case: compacted once, then only appends (a collector): before, the
    replaced files stayed until the same day was compacted again, possibly never."""
    clock = Clock(T0.timestamp())
    store, ingest = _compacted(tmp_path, clock)
    clock.now += RETIRE_GRACE_SECONDS + 1
    later = T0 + timedelta(days=5)  # a different day from those compacted
    store.append(random_flows(10, seed=4, days=1, start_us=int(later.timestamp() * 1e6)))
    assert not ingest & _files_on_disk(tmp_path)
    stats = store.stats()
    assert stats.retired_files == 0 and stats.retired_bytes == 0
    assert stats.rows == 4_010


def test_opening_the_store_after_the_grace_removes_them(tmp_path: Path) -> None:
    clock = Clock(T0.timestamp())
    _, ingest = _compacted(tmp_path, clock)
    clock.now += 3_600
    _store(tmp_path, clock)
    assert not ingest & _files_on_disk(tmp_path)


def test_retention_and_compaction_sweep_other_days(tmp_path: Path) -> None:
    clock = Clock(T0.timestamp())
    store, ingest = _compacted(tmp_path, clock)
    clock.now += 3_600
    store.compact()  # nothing to compact: still sweeps
    assert not ingest & _files_on_disk(tmp_path)
    store2, ingest2 = _compacted(tmp_path / "b", clock)
    clock.now += 3_600
    store2.retention(now=T0 + timedelta(days=30))  # deletes nothing (90-day window)
    assert not ingest2 & _files_on_disk(tmp_path / "b")


def test_store_stats_shows_live_and_retired_bytes(tmp_path: Path) -> None:
    clock = Clock(datetime.now(UTC).timestamp())  # the CLI opens the store on the real clock
    _compacted(tmp_path, clock)
    out = CliRunner().invoke(cli, ["store", "stats", "--store", str(tmp_path), "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    total = rows[-1]
    assert total["day"] == "total" and total["retired_bytes"] > 0 and total["bytes"] > 0
    assert total["retired_files"] == 4 + 4  # four appends spanning two days each
