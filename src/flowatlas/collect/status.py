"""Live counters per exporter: what arrived, what was kept, what was skipped and why."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowatlas.addresses import unpack

STATUS_FILE = "collector-status.json"
"""Where a collector rewrites :meth:`CollectorStatus.as_dict` every few seconds (in its state
directory, the store by default), for the terminal, the service and anyone else to read."""
STALE_SECONDS = 30.0
"""A status file this old means its collector has stopped (it is rewritten every 5 s)."""


@dataclass
class ExporterCounters:
    """Counters for one exporter address (all protocols it speaks)."""

    packets: int = 0
    records: int = 0
    malformed: int = 0
    unknown_template: int = 0
    pending: int = 0
    sequence_gaps: int = 0
    lost: int = 0
    sflow_sample_gaps: int = 0
    """sFlow flow samples missing by their data source's sample sequence numbers."""
    sflow_drops: int = 0
    """sFlow samples the agent dropped for lack of resources (its data sources' drops)."""
    unregistered: int = 0
    templates: int = 0
    last_seen: float = 0.0
    versions: set[int] = field(default_factory=set)
    reasons: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "packets": self.packets,
            "records": self.records,
            "malformed": self.malformed,
            "unknown_template": self.unknown_template,
            "pending": self.pending,
            "sequence_gaps": self.sequence_gaps,
            "lost": self.lost,
            "sflow_sample_gaps": self.sflow_sample_gaps,
            "sflow_drops": self.sflow_drops,
            "unregistered": self.unregistered,
            "templates": self.templates,
            "last_seen": self.last_seen,
            "versions": sorted(self.versions),
            "reasons": dict(self.reasons),
        }


class CollectorStatus:
    """Counters for every exporter seen, plus totals by skip reason."""

    def __init__(self) -> None:
        self.exporters: dict[bytes, ExporterCounters] = {}
        self.reasons: Counter[str] = Counter()
        self.started = time.time()

    def of(self, exporter: bytes) -> ExporterCounters:
        c = self.exporters.get(exporter)
        if c is None:
            c = self.exporters[exporter] = ExporterCounters()
        return c

    def skip(self, exporter: bytes, reason: str, malformed: bool = True, count: int = 1) -> None:
        """Count ``count`` skipped datagrams, sets or records under ``reason``."""
        c = self.of(exporter)
        c.reasons[reason] += count
        if malformed:
            c.malformed += count
        self.reasons[reason] += count

    def totals(self) -> dict[str, int]:
        keys = ("packets", "records", "malformed", "unknown_template", "sequence_gaps", "lost",
                "sflow_sample_gaps", "sflow_drops", "unregistered")
        return {k: sum(getattr(c, k) for c in self.exporters.values()) for k in keys}

    def as_dict(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "totals": self.totals(),
            "reasons": dict(self.reasons),
            "exporters": {unpack(k): c.as_dict() for k, c in self.exporters.items()},
        }


def publish(status: CollectorStatus, path: Path) -> None:
    """Replace the status file atomically, so a reader never sees half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status.as_dict()))
    os.replace(tmp, path)


def published(path: Path) -> dict[str, Any]:
    """What a collector last published at ``path``: ``running`` (published within
    STALE_SECONDS), ``status`` (its counters, or None) and ``age_seconds``."""
    body: dict[str, Any] = {"running": False, "status": None, "age_seconds": None}
    try:
        age = time.time() - path.stat().st_mtime
        body = {"running": age < STALE_SECONDS, "status": json.loads(path.read_text()),
                "age_seconds": round(age, 1)}
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:  # unreadable or damaged: say so rather than fail
        body["error"] = f"cannot read {path.name}: {exc}"
    return body
