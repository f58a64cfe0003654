"""Per-day manifests: the single source of truth for which Parquet files are live.

Readers never list directories. A file becomes visible only when a new manifest naming it is
renamed into place (``os.replace`` is atomic on POSIX), so a reader sees either the old set of
files or the new one, never a half-written file. Files dropped from a manifest are kept for a
grace period (``retired``) so that a reader holding the previous manifest can finish.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flowatlas.store.errors import StoreError

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


@dataclass
class IngestFile:
    """A freshly appended file, in arrival order, not yet laid out for lookups."""

    file: str
    rows: int
    size: int


@dataclass
class Run:
    """One compacted run: the same rows twice, sorted by source and by destination address."""

    src: str
    dst: str
    rows: int
    size: int


@dataclass
class Retired:
    file: str
    at: float


@dataclass
class DayManifest:
    day: str
    ingest: list[IngestFile] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    retired: list[Retired] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.ingest) + sum(r.rows for r in self.runs)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.ingest) + sum(r.size for r in self.runs)

    def live_files(self) -> list[str]:
        return [f.file for f in self.ingest] + [p for r in self.runs for p in (r.src, r.dst)]

    def retire(self, files: list[str], now: float | None = None) -> None:
        at = time.time() if now is None else now
        self.retired.extend(Retired(f, at) for f in files)

    def to_json(self) -> dict[str, Any]:
        return {"version": MANIFEST_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DayManifest:
        return cls(
            day=data["day"],
            ingest=[IngestFile(**f) for f in data.get("ingest", [])],
            runs=[Run(**r) for r in data.get("runs", [])],
            retired=[Retired(**r) for r in data.get("retired", [])],
        )


def read_manifest(day_dir: Path) -> DayManifest | None:
    """The day's manifest; None when there is none. A damaged one is a StoreError naming it
    (never a guess: it is what says which files hold the day's rows)."""
    path = day_dir / MANIFEST_NAME
    try:
        with path.open("rb") as fh:
            data = json.load(fh)
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        manifest = DayManifest.from_json(data)
        counts = [(f.rows, f.size) for f in manifest.ingest]
        counts += [(r.rows, r.size) for r in manifest.runs]
        if not all(isinstance(n, int) and isinstance(b, int) for n, b in counts):
            raise TypeError("rows and size must be whole numbers")
        return manifest
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"damaged day manifest {path}: {exc}") from exc


def write_manifest(day_dir: Path, manifest: DayManifest) -> None:
    """Publish atomically: write a temporary file, fsync it, rename it over the old one."""
    tmp = day_dir / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
    with tmp.open("w") as fh:
        json.dump(manifest.to_json(), fh, separators=(",", ":"))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, day_dir / MANIFEST_NAME)
