"""FlowStore: a Parquet dataset of flows, one directory per UTC day.

Layout (see docs/architecture.md)::

    ROOT/
      store.json                 settings (retention window)
      .lock                      flock for manifest updates
      day=2026-11-28/
        manifest.json            the live files of the day (store/manifest.py)
        ingest/<id>.parquet      appended batches, arrival order
        src/<id>.parquet         compacted run sorted by (src_addr, time_start)
        dst/<id>.parquet         the same rows sorted by (dst_addr, time_start)

Appends land in ``ingest/``; ``compact`` rewrites them into runs kept twice, once sorted by
each endpoint, with small row groups, so that an address lookup touches one or two row groups
per run via the Parquet min/max statistics instead of scanning the day.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flowatlas.schema import FLOW_SCHEMA, HOLDABLE_END_US, HOLDABLE_MIN_US, conform
from flowatlas.store.errors import StoreError as StoreError  # re-exported here too
from flowatlas.store.manifest import (
    MANIFEST_NAME,
    DayManifest,
    IngestFile,
    Run,
    read_manifest,
    write_manifest,
)

DEFAULT_RETENTION_DAYS = 90
ROW_GROUP_ROWS = 16_384
"""Compacted runs: small row groups keep the rows read per lookup low; zstd keeps the size down."""
INGEST_ROW_GROUP_ROWS = 262_144
"""Ingest files are short-lived and unsorted (their statistics prune little): write them fast."""
RUN_MAX_ROWS = 2_000_000
"""Compaction sorts at most this many rows in memory at once (about 200 MB of Arrow data)."""
RETIRE_GRACE_SECONDS = 300.0
"""Files dropped from a manifest stay this long, for readers holding the previous one."""
RETIRE_SWEEP_SECONDS = 60.0
"""A writing process looks for expired retirees at most this often (opening the store,
compaction and retention always look): files another process retired are found too."""
INGEST_COMPRESSIONS = ("lz4", "none", "zstd")
"""Codecs an ingest file may be written with (the store setting ``ingest_compression``)."""
DEFAULT_INGEST_COMPRESSION = "lz4"
_US_PER_DAY = 86_400 * 1_000_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()




@dataclass(frozen=True)
class Snapshot:
    """The live files of a range of days, as seen at one moment."""

    ingest: tuple[str, ...]
    by_src: tuple[str, ...]
    by_dst: tuple[str, ...]
    days: tuple[date, ...]

    @property
    def primary(self) -> tuple[str, ...]:
        """Every row exactly once: compacted runs (by source) plus fresh ingest files."""
        return self.by_src + self.ingest

    @property
    def empty(self) -> bool:
        return not (self.ingest or self.by_src)


@dataclass
class DayStats:
    day: date
    rows: int
    files: int
    bytes: int
    ingest_files: int
    runs: int
    retired_files: int = 0
    """Files replaced (by compaction or a purge) still on disk within their grace period."""
    retired_bytes: int = 0


@dataclass
class StoreStats:
    days: list[DayStats] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.days)

    @property
    def files(self) -> int:
        return sum(d.files for d in self.days)

    @property
    def bytes(self) -> int:
        return sum(d.bytes for d in self.days)

    @property
    def retired_files(self) -> int:
        return sum(d.retired_files for d in self.days)

    @property
    def retired_bytes(self) -> int:
        return sum(d.retired_bytes for d in self.days)


@dataclass
class CompactReport:
    days: int = 0
    files_in: int = 0
    runs_out: int = 0
    rows: int = 0
    seconds: float = 0.0


def day_of(ts_us: int) -> date:
    """The UTC day of ``ts_us`` (µs since the epoch), for any int64: integer arithmetic, and
    times beyond the dates Python can name are clamped to the first or last one (``append``
    refuses such times before a day is ever chosen)."""
    ordinal = _EPOCH_ORDINAL + ts_us // _US_PER_DAY
    return date.fromordinal(min(max(ordinal, 1), date.max.toordinal()))


def _day_dirname(day: date) -> str:
    return f"day={day.isoformat()}"


def _write_json_atomic(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_settings(path: Path) -> dict[str, Any]:
    """``store.json``, checked: a JSON object whose known settings have their types."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise StoreError(f"{path} is not a flowatlas store file (a JSON object)")
    days = data.get("retention_days", DEFAULT_RETENTION_DAYS)
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise StoreError(f"{path}: retention_days {days!r} is not a whole number of days >= 1")
    codec = data.get("ingest_compression", DEFAULT_INGEST_COMPRESSION)
    if codec not in INGEST_COMPRESSIONS:
        raise StoreError(f"{path}: ingest_compression {codec!r} is not one of "
                         + ", ".join(INGEST_COMPRESSIONS))
    return data


@contextlib.contextmanager
def _os_errors(root: Path) -> Iterator[None]:
    """An operating-system error on the store (read-only, full, permissions) as a StoreError
    naming the file, so that commands say it in one line."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or root
        raise StoreError(f"store {root}: cannot write or read {where}: "
                         f"{exc.strerror or exc}") from exc


_F = TypeVar("_F", bound=Callable[..., Any])


def _writes(method: _F) -> _F:
    """A FlowStore method that writes: an OSError (read-only store, disk full) becomes a
    StoreError naming the store and the file."""

    @functools.wraps(method)
    def wrapper(self: FlowStore, *args: Any, **kwargs: Any) -> Any:
        with _os_errors(self.root):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class FlowStore:
    """Append, compact, expire and read the flow dataset under ``root``."""

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True,
                 retention_days: int | None = None, ingest_compression: str | None = None,
                 clock: Callable[[], float] = time.time,
                 retire_grace: float = RETIRE_GRACE_SECONDS) -> None:
        if ingest_compression is not None and ingest_compression not in INGEST_COMPRESSIONS:
            raise StoreError(f"ingest compression {ingest_compression!r}: choose one of "
                             + ", ".join(INGEST_COMPRESSIONS))
        self.root = Path(root)
        self.clock = clock
        self.retire_grace = retire_grace
        self._next_sweep = 0.0
        settings = self.root / "store.json"
        with _os_errors(self.root):
            if not settings.exists():
                if not create:
                    raise StoreError(f"no flowatlas store at {self.root} (missing store.json)")
                self.root.mkdir(parents=True, exist_ok=True)
                self._write_settings({"retention_days": retention_days or DEFAULT_RETENTION_DAYS})
            self.settings = _read_settings(settings)
            changes = {k: v for k, v in (("retention_days", retention_days),
                                         ("ingest_compression", ingest_compression))
                       if v is not None and v != self.settings.get(k)}
            if changes:
                self.settings.update(changes)
                self._write_settings(self.settings)
        self._manifests: dict[date, tuple[tuple[int, int, int], DayManifest]] = {}
        if os.access(self.root, os.W_OK):  # a read-only store can still be read
            with _os_errors(self.root):
                self._recover()
                self.sweep_retired()

    # -- settings and locking -------------------------------------------------------------

    def _write_settings(self, data: dict[str, object]) -> None:
        tmp = self.root / ".store.json.tmp"
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, self.root / "store.json")

    @property
    def retention_days(self) -> int:
        return int(self.settings.get("retention_days", DEFAULT_RETENTION_DAYS))

    @property
    def ingest_compression(self) -> str:
        """Codec of new ingest files: lz4 (the default) makes them about 4x smaller than
        ``none``, which saves about a third of the writer's CPU per row (docs/collector.md).
        Compaction rewrites either as zstd."""
        return str(self.settings.get("ingest_compression", DEFAULT_INGEST_COMPRESSION))

    @contextlib.contextmanager
    def _lock(self, name: str = ".lock") -> Iterator[None]:
        with (self.root / name).open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _day_dir(self, day: date) -> Path:
        return self.root / _day_dirname(day)

    # -- writing ----------------------------------------------------------------------------

    @_writes
    def append(self, batch: pa.RecordBatch | pa.Table) -> int:
        """Store a batch of flows; returns the rows stored. Visible to readers on return.

        All or nothing, also when the batch spans several days: the day files are written
        first, then a journal naming them, then the manifests. A crash before the journal leaves
        only unnamed debris; a crash after it is rolled forward when the store is next opened.
        """
        table = conform(batch)
        if table.num_rows == 0:
            return 0
        starts = pc.min_max(table.column("time_start").cast(pa.int64())).as_py()
        if starts["min"] < HOLDABLE_MIN_US or starts["max"] >= HOLDABLE_END_US:
            raise StoreError("time_start outside 0001-01-01..9999-12-31 cannot be stored "
                             "(the ingest pipeline drops such flows: flowatlas.ingest)")
        if starts["min"] // _US_PER_DAY == starts["max"] // _US_PER_DAY:
            # The common case (collectors flush often, the simulator writes by day): no sort.
            day_numbers = None
            unique_days = np.array([starts["min"] // _US_PER_DAY])
        else:
            day_numbers = table.column("time_start").cast(pa.int64()).to_numpy() // _US_PER_DAY
            unique_days = np.unique(day_numbers)
        entries: list[dict[str, object]] = []
        for day_number in unique_days:
            part = table if day_numbers is None else table.filter(pa.array(day_numbers == day_number))
            day = day_of(int(day_number) * _US_PER_DAY)
            (self._day_dir(day) / "ingest").mkdir(parents=True, exist_ok=True)
            name = f"ingest/{uuid.uuid4().hex}.parquet"
            size = self._write_file(self._day_dir(day) / name, part)
            entries.append({"day": day.isoformat(), "file": name, "rows": part.num_rows,
                            "size": size})
        journal = self._journal_dir / f"{uuid.uuid4().hex}.json"
        if len(entries) > 1:
            _write_json_atomic(journal, entries)
        self._publish(entries)
        journal.unlink(missing_ok=True)
        self._sweep_if_due()
        return int(table.num_rows)

    @property
    def _journal_dir(self) -> Path:
        path = self.root / ".journal"
        path.mkdir(exist_ok=True)
        return path

    def _publish(self, entries: list[dict[str, object]]) -> None:
        """Add ingest files to their days' manifests (idempotent, so safe to replay)."""
        with self._lock():
            for e in entries:
                day_dir = self._day_dir(date.fromisoformat(str(e["day"])))
                manifest = read_manifest(day_dir) or DayManifest(day=str(e["day"]))
                if str(e["file"]) not in manifest.live_files():
                    manifest.ingest.append(IngestFile(str(e["file"]), int(str(e["rows"])),
                                                      int(str(e["size"]))))
                    write_manifest(day_dir, manifest)

    def _recover(self) -> None:
        """Roll forward appends that a crash interrupted after their journal was written."""
        for journal in sorted((self.root / ".journal").glob("*.json")):
            try:
                entries = json.loads(journal.read_text())
            except ValueError:
                journal.unlink(missing_ok=True)   # torn journal: its files were never named
                continue
            if all((self._day_dir(date.fromisoformat(e["day"])) / e["file"]).exists()
                   for e in entries):
                self._publish(entries)
            journal.unlink(missing_ok=True)

    def _write_file(self, path: Path, table: pa.Table, sorting: str | None = None) -> int:
        """Write to a hidden temporary name, fsync, then rename: no partial file is ever live.

        Sorted (compacted) files get small zstd row groups; ingest files get the store's
        ``ingest_compression`` and large row groups, about 1.5x faster to write. Dictionary
        encoding is off: on flow data it made files no smaller under zstd and cost a third of
        the write time (measured with pyarrow 26).
        """
        tmp = path.with_name(f".{path.name}.tmp")
        if sorting:
            sorting_columns = [pq.SortingColumn(FLOW_SCHEMA.get_field_index(sorting)),
                               pq.SortingColumn(FLOW_SCHEMA.get_field_index("time_start"))]
            pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, compression="zstd",
                           use_dictionary=False, sorting_columns=sorting_columns)
        else:
            # Unsorted addresses span the whole range in every row group: only time statistics
            # can prune an ingest file, so only they are worth computing.
            pq.write_table(table, tmp, row_group_size=INGEST_ROW_GROUP_ROWS,
                           compression=self.ingest_compression, use_dictionary=False,
                           write_statistics=["time_start", "time_end"])
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path.stat().st_size

    def writer(self, *, max_rows: int = 500_000, max_seconds: float = 5.0) -> BatchWriter:
        """A buffering writer that appends in batches by size or age (for collectors)."""
        return BatchWriter(self, max_rows=max_rows, max_seconds=max_seconds)

    # -- reading ----------------------------------------------------------------------------

    def days(self) -> list[date]:
        out = []
        with os.scandir(self.root) as entries:
            for entry in entries:
                if entry.name.startswith("day="):
                    with contextlib.suppress(ValueError):
                        out.append(date.fromisoformat(entry.name[4:]))
        return sorted(out)

    def manifest(self, day: date) -> DayManifest | None:
        """The day's manifest; parsed once per version (a lookup reads 90 of them)."""
        path = self._day_dir(day) / MANIFEST_NAME
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        version = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._manifests.get(day)
        if cached is not None and cached[0] == version:
            return cached[1]
        manifest = read_manifest(path.parent)
        if manifest is not None:
            self._manifests[day] = (version, manifest)
        return manifest

    def snapshot(self, since: datetime | None = None, until: datetime | None = None) -> Snapshot:
        """The live files of the days overlapping ``[since, until)``, as absolute paths."""
        ingest: list[str] = []
        by_src: list[str] = []
        by_dst: list[str] = []
        days: list[date] = []
        first = since.astimezone(UTC).date() if since else None
        last = until.astimezone(UTC).date() if until else None
        for day in self.days():
            if (first and day < first) or (last and day > last):
                continue
            manifest = self.manifest(day)
            if manifest is None:
                continue
            base = f"{self.root}/{_day_dirname(day)}/"
            days.append(day)
            ingest.extend(base + f.file for f in manifest.ingest)
            for run in manifest.runs:
                by_src.append(base + run.src)
                by_dst.append(base + run.dst)
        return Snapshot(tuple(ingest), tuple(by_src), tuple(by_dst), tuple(days))

    def scan(self, since: datetime | None = None, until: datetime | None = None,
             batch_rows: int = 262_144) -> Iterator[pa.RecordBatch]:
        """Stream every stored row of the window, in bounded memory (for exports and engines)."""
        for path in self.snapshot(since, until).primary:
            yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows)

    def stats(self) -> StoreStats:
        """Rows, live files and bytes per day, and the retired files still on disk (their
        bytes as found there: they are gone once swept)."""
        out = StoreStats()
        for day in self.days():
            m = self.manifest(day)
            if m is None:
                continue
            retired = 0
            for r in m.retired:
                with contextlib.suppress(FileNotFoundError):
                    retired += (self._day_dir(day) / r.file).stat().st_size
            out.days.append(DayStats(day, m.rows, len(m.live_files()), m.size,
                                     len(m.ingest), len(m.runs), len(m.retired), retired))
        return out

    # -- maintenance ------------------------------------------------------------------------

    @_writes
    def compact(self, day: date | None = None, *, run_max_rows: int = RUN_MAX_ROWS) -> CompactReport:
        """Rewrite ingest files (and undersized runs) into endpoint-sorted runs.

        Memory is bounded by ``run_max_rows`` whatever the size of the day: a day with more rows
        gets several runs, each sorted, each pruned by its own statistics at query time.
        """
        return self._compact_days([day] if day else self.days(), run_max_rows)

    @_writes
    def compact_due(self, now: datetime | None = None, *, settle_seconds: float = 3600.0,
                    run_max_rows: int = RUN_MAX_ROWS) -> CompactReport:
        """Compact the days that are due (the schedule ``serve`` and ``store compact --due``
        follow): a day whose fresh files already hold a full run's rows, and a day that ended
        ``settle_seconds`` ago with fresh files left (late flows may still trickle in, so
        finished days are not compacted the moment they end).
        """
        moment = now or datetime.now(UTC)
        settled = (moment - timedelta(seconds=settle_seconds)).date()
        due: list[date] = []
        for day in self.days():
            m = self.manifest(day)
            if m is None or not m.ingest:
                continue
            if day < settled or sum(f.rows for f in m.ingest) >= run_max_rows:
                due.append(day)
        return self._compact_days(due, run_max_rows)

    def _compact_days(self, days: list[date], run_max_rows: int) -> CompactReport:
        started = time.perf_counter()
        report = CompactReport()
        with self._lock(".compact.lock"):
            for day in days:
                self._compact_day(day, run_max_rows, report)
        self.sweep_retired()
        report.seconds = time.perf_counter() - started
        return report

    def _compact_day(self, day: date, run_max_rows: int, report: CompactReport) -> None:
        day_dir = self._day_dir(day)
        manifest = read_manifest(day_dir)
        if manifest is None:
            return
        self._drop_retired(day_dir)
        small_runs = [r for r in manifest.runs if r.rows < run_max_rows // 4]
        inputs: list[tuple[str, int, IngestFile | Run]] = [
            (f.file, f.rows, f) for f in manifest.ingest
        ] + [(r.src, r.rows, r) for r in small_runs]
        if not manifest.ingest and len(small_runs) <= 1:
            return
        groups: list[list[tuple[str, int, IngestFile | Run]]] = [[]]
        count = 0
        for item in inputs:
            if groups[-1] and count + item[1] > run_max_rows:
                groups.append([])
                count = 0
            groups[-1].append(item)
            count += item[1]
        (day_dir / "src").mkdir(exist_ok=True)
        (day_dir / "dst").mkdir(exist_ok=True)
        new_runs: list[Run] = []
        for group in groups:
            table = pa.concat_tables(pq.read_table(day_dir / name, schema=FLOW_SCHEMA)
                                     for name, _, _ in group)
            run_id = uuid.uuid4().hex
            size = 0
            for key in ("src", "dst"):
                ordered = table.sort_by([(f"{key}_addr", "ascending"), ("time_start", "ascending")])
                size += self._write_file(day_dir / key / f"{run_id}.parquet", ordered, f"{key}_addr")
                del ordered
            new_runs.append(Run(f"src/{run_id}.parquet", f"dst/{run_id}.parquet", table.num_rows, size))
            report.rows += table.num_rows
            del table
        consumed_ingest = {item.file for _, _, item in inputs if isinstance(item, IngestFile)}
        consumed_runs = {item.src for _, _, item in inputs if isinstance(item, Run)}
        with self._lock():
            current = read_manifest(day_dir) or DayManifest(day=day.isoformat())
            retired = [f.file for f in current.ingest if f.file in consumed_ingest]
            retired += [p for r in current.runs if r.src in consumed_runs for p in (r.src, r.dst)]
            current.ingest = [f for f in current.ingest if f.file not in consumed_ingest]
            current.runs = [r for r in current.runs if r.src not in consumed_runs] + new_runs
            current.retire(retired, self.clock())
            write_manifest(day_dir, current)
        report.days += 1
        report.files_in += len(inputs)
        report.runs_out += len(new_runs)

    def sweep_retired(self) -> tuple[int, int]:
        """Delete every day's retired files whose grace period has passed; returns (files,
        bytes) given back. Runs on opening the store, after compaction and retention, and
        from appends at most every RETIRE_SWEEP_SECONDS, so disk comes back whatever runs
        next (before, only a later compaction of the same day removed them)."""
        now = self.clock()
        self._next_sweep = now + RETIRE_SWEEP_SECONDS
        files = size = 0
        for day in self.days():
            try:
                m = self.manifest(day)  # cached per version: cheap when nothing changed
            except StoreError:
                continue  # damaged: reported by whatever reads the day, not by a sweep
            if m is not None and any(now - r.at >= self.retire_grace for r in m.retired):
                n, b = self._drop_expired(self._day_dir(day), now)
                files, size = files + n, size + b
        return files, size

    def _sweep_if_due(self) -> None:
        if self.clock() >= self._next_sweep:
            self.sweep_retired()

    def _drop_expired(self, day_dir: Path, now: float) -> tuple[int, int]:
        """Delete the day's retirees older than the grace period; returns (files, bytes)."""
        files = size = 0
        with self._lock():
            manifest = read_manifest(day_dir)
            if manifest is None:
                return 0, 0
            keep = []
            for r in manifest.retired:
                if now - r.at >= self.retire_grace:
                    path = day_dir / r.file
                    with contextlib.suppress(FileNotFoundError):
                        size += path.stat().st_size
                        path.unlink()
                        files += 1
                else:
                    keep.append(r)
            if len(keep) != len(manifest.retired):
                manifest.retired = keep
                write_manifest(day_dir, manifest)
        return files, size

    def _drop_retired(self, day_dir: Path) -> None:
        """Delete the day's expired retirees, and debris of interrupted writes (files no
        manifest names, older than the grace period)."""
        now = self.clock()
        self._drop_expired(day_dir, now)
        with self._lock():
            manifest = read_manifest(day_dir)
            if manifest is None:
                return
            known = set(manifest.live_files()) | {r.file for r in manifest.retired}
            for sub in ("ingest", "src", "dst"):
                for path in (day_dir / sub).glob("*"):
                    rel = f"{sub}/{path.name}"
                    stale = time.time() - path.stat().st_mtime > self.retire_grace
                    if rel not in known and stale:
                        path.unlink(missing_ok=True)

    @_writes
    def retention(self, now: datetime | None = None, days: int | None = None) -> list[date]:
        """Delete whole days older than the retention window; returns the days deleted."""
        now = now or datetime.now(UTC)
        window = days if days is not None else self.retention_days
        cutoff = (now.astimezone(UTC) - timedelta(days=window)).date()
        deleted = []
        for day in self.days():
            if day < cutoff:
                day_dir = self._day_dir(day)
                with self._lock():
                    doomed = self.root / f".deleted-{day.isoformat()}-{uuid.uuid4().hex[:8]}"
                    os.replace(day_dir, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
                deleted.append(day)
        self.sweep_retired()
        return deleted

    @_writes
    def delete_where(self, predicate: Callable[[pa.Table], pa.ChunkedArray | pa.Array]) -> int:
        """Remove every stored row for which ``predicate`` is true (opt-outs); returns rows removed.

        Each affected file is rewritten without those rows and swapped in through the manifest,
        one file at a time, so memory stays at one file and readers never see a partial state.
        """
        removed = 0
        with self._lock(".compact.lock"):
            for day in self.days():
                day_dir = self._day_dir(day)
                manifest = read_manifest(day_dir)
                if manifest is None:
                    continue
                replacements: dict[str, tuple[str, int, int]] = {}
                for rel in manifest.live_files():
                    table = pq.read_table(day_dir / rel, schema=FLOW_SCHEMA)
                    mask = pc.fill_null(predicate(table), False)
                    hits = pc.sum(mask).as_py() or 0
                    if not hits:
                        continue
                    kept = table.filter(pc.invert(mask))
                    new_rel = f"{rel.split('/')[0]}/{uuid.uuid4().hex}.parquet"
                    sorting = {"src": "src_addr", "dst": "dst_addr"}.get(rel.split("/")[0])
                    size = self._write_file(day_dir / new_rel, kept, sorting)
                    replacements[rel] = (new_rel, kept.num_rows, size)
                    if not rel.startswith("dst/"):
                        removed += hits
                if not replacements:
                    continue
                with self._lock():
                    current = read_manifest(day_dir) or manifest
                    for f in current.ingest:
                        if f.file in replacements:
                            f.file, f.rows, f.size = replacements[f.file]
                    for r in current.runs:
                        if r.src in replacements:
                            r.src, r.rows, src_size = replacements[r.src]
                        else:
                            src_size = 0
                        if r.dst in replacements:
                            r.dst, _, dst_size = replacements[r.dst]
                        else:
                            dst_size = 0
                        if src_size or dst_size:
                            r.size = src_size + dst_size or r.size
                    current.retire(list(replacements), self.clock())
                    write_manifest(day_dir, current)
        return removed


class BatchWriter:
    """Buffers small batches and appends them as one file by size or by age.

    When an append fails the writer stops: every later ``write`` raises that failure again,
    and what was accepted but not stored (the failed batch, what was queued behind it and what
    is still buffered) stays in :attr:`unwritten` for the caller to keep.
    """

    def __init__(self, store: FlowStore, *, max_rows: int, max_seconds: float) -> None:
        self.store = store
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self._pending: list[pa.Table] = []
        self._rows = 0
        self._oldest: float | None = None
        self.rows_written = 0
        self._queue: queue.Queue[pa.Table | None] | None = None
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None
        """The first append failure (sticky: a failed writer accepts nothing more)."""
        self.unwritten: list[pa.Table] = []

    def start_background(self, depth: int = 2) -> None:
        """Append on a thread of its own from now on.

        A collector receiving datagrams must not stall for a Parquet write and two fsyncs, or
        the kernel's receive buffer overflows in a burst. At most ``depth`` batches wait, so
        memory stays bounded and a slow disk pushes back on the caller.
        """
        if self._thread is None:
            self._queue = queue.Queue(maxsize=depth)
            self._thread = threading.Thread(target=self._drain, name="flowstore-writer",
                                            daemon=True)
            self._thread.start()

    def _drain(self) -> None:
        assert self._queue is not None
        while (table := self._queue.get()) is not None:
            if self.failure is not None:
                self.unwritten.append(table)
                continue
            try:
                self.rows_written += self.store.append(table)
            except BaseException as exc:  # surfaced in the caller's thread by _check
                self.failure = exc
                self.unwritten.append(table)

    @property
    def unwritten_rows(self) -> int:
        return int(sum(t.num_rows for t in self.unwritten)) + self._rows

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        self._check()
        table = conform(batch)
        if table.num_rows == 0:
            return
        self._pending.append(table)
        self._rows += table.num_rows
        if self._oldest is None:
            self._oldest = time.monotonic()
        self.flush_if_due()

    def flush_if_due(self) -> None:
        age = time.monotonic() - self._oldest if self._oldest is not None else 0.0
        if self._rows >= self.max_rows or (self._rows and age >= self.max_seconds):
            self.flush()

    def flush(self) -> int:
        """Append what is buffered (or hand it to the writer thread); returns its rows."""
        if not self._pending:
            return 0
        table = pa.concat_tables(self._pending)
        self._pending, self._rows, self._oldest = [], 0, None
        if self.failure is not None:
            self.unwritten.append(table)
            return 0
        if self._queue is not None:
            self._queue.put(table)
            return int(table.num_rows)
        try:
            written = self.store.append(table)
        except BaseException as exc:
            self.failure = exc
            self.unwritten.append(table)
            raise
        self.rows_written += written
        return written

    def close(self) -> None:
        """Append everything still buffered and, with a writer thread, wait for it.

        Raises the failure if an append failed (``unwritten`` then holds the rest)."""
        with contextlib.suppress(Exception):
            self.flush()  # a failure is kept in self.failure and raised below
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
            self._queue = None
        self._check()

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
