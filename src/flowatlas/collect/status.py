"""Live counters per exporter: what arrived, what was kept, what was skipped and why."""

from __future__ import annotations

import json
import os
import time
from collections import Counter, OrderedDict
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
    sequence_resets: int = 0
    """Restarts and gaps too wide to be loss (``collector.sequence_max_gap``)."""
    sflow_sample_gaps: int = 0
    """sFlow flow samples missing by their data source's sample sequence numbers."""
    sflow_drops: int = 0
    """sFlow samples the agent dropped for lack of resources (its data sources' drops)."""
    unregistered: int = 0
    dropped: int = 0
    """Decoded records the ingest pipeline dropped (implausible times, opt-outs): by reason in
    ``reasons``."""
    templates: int = 0
    template_bytes: int = 0
    """Estimated bytes of this exporter's templates (capped: collector.template_max_bytes_*)."""
    templates_evicted: int = 0
    """Templates pushed out for room, or refused as bigger than the per-exporter cap."""
    pending_bytes: int = 0
    sequence_streams_evicted: int = 0
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
            "sequence_resets": self.sequence_resets,
            "sflow_sample_gaps": self.sflow_sample_gaps,
            "sflow_drops": self.sflow_drops,
            "unregistered": self.unregistered,
            "dropped": self.dropped,
            "templates": self.templates,
            "template_bytes": self.template_bytes,
            "templates_evicted": self.templates_evicted,
            "pending_bytes": self.pending_bytes,
            "sequence_streams_evicted": self.sequence_streams_evicted,
            "last_seen": self.last_seen,
            "versions": sorted(self.versions),
            "reasons": dict(self.reasons),
        }


DEFAULT_MAX_EXPORTERS = 4096
"""Exporter addresses with counters of their own; spoofed sources are endless."""
_SUMMED = ("packets", "records", "malformed", "unknown_template", "sequence_gaps", "lost",
           "sequence_resets", "sflow_sample_gaps", "sflow_drops", "unregistered", "dropped",
           "templates_evicted")


class CollectorStatus:
    """Counters for every exporter seen, plus totals by skip reason.

    At most ``max_exporters`` addresses keep counters of their own, the most recently seen:
    a flood of spoofed source addresses must not grow memory or the status file without
    bound. The counters of an address pushed out are added to ``evicted`` (kept in the totals)
    and ``exporters_evicted`` counts the addresses.
    """

    def __init__(self, max_exporters: int = DEFAULT_MAX_EXPORTERS) -> None:
        self.exporters: OrderedDict[bytes, ExporterCounters] = OrderedDict()
        self.max_exporters = max_exporters
        self.evicted: Counter[str] = Counter()
        self.exporters_evicted = 0
        self.reasons: Counter[str] = Counter()
        self.started = time.time()
        self.held: dict[str, dict[str, int]] = {}
        """What the decoder's bounded state holds against its caps (set by the decoder)."""
        self.state = "running"
        """``running``, ``stopped`` or ``failed`` (the writer failed; see ``error``)."""
        self.error: str | None = None
        self.unwritten: str | None = None
        """Where a failed collector saved the flows it had accepted but not stored."""

    def of(self, exporter: bytes) -> ExporterCounters:
        c = self.exporters.get(exporter)
        if c is None:
            c = self.exporters[exporter] = ExporterCounters()
            while len(self.exporters) > self.max_exporters:
                _, old = self.exporters.popitem(last=False)
                for k in _SUMMED:
                    self.evicted[k] += getattr(old, k)
                self.exporters_evicted += 1
        else:
            self.exporters.move_to_end(exporter)
        return c

    def skip(self, exporter: bytes, reason: str, malformed: bool = True, count: int = 1) -> None:
        """Count ``count`` skipped datagrams, sets or records under ``reason``."""
        c = self.of(exporter)
        c.reasons[reason] += count
        if malformed:
            c.malformed += count
        self.reasons[reason] += count

    def drop(self, exporter: bytes, reason: str, count: int) -> None:
        """Count ``count`` decoded records the ingest pipeline dropped under ``reason``."""
        c = self.of(exporter)
        c.dropped += count
        c.reasons[reason] += count
        self.reasons[reason] += count

    def fail(self, error: str, unwritten: str | None = None) -> None:
        self.state, self.error, self.unwritten = "failed", error, unwritten

    def totals(self) -> dict[str, int]:
        """Sums over every exporter seen, those pushed out included."""
        out = {k: sum(getattr(c, k) for c in self.exporters.values()) + self.evicted[k]
               for k in _SUMMED}
        out["exporters_evicted"] = self.exporters_evicted
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "state": self.state,
            "error": self.error,
            "unwritten": self.unwritten,
            "totals": self.totals(),
            "reasons": dict(self.reasons),
            "held": self.held,
            "exporters": {unpack(k): c.as_dict() for k, c in self.exporters.items()},
        }


def publish(status: CollectorStatus, path: Path) -> None:
    """Replace the status file atomically, so a reader never sees half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status.as_dict()))
    os.replace(tmp, path)


def published(path: Path) -> dict[str, Any]:
    """What a collector last published at ``path``: ``running`` (published within
    STALE_SECONDS and not stopped or failed), ``status`` (its counters, or None),
    ``age_seconds`` and ``error`` (why it failed, if it did)."""
    body: dict[str, Any] = {"running": False, "status": None, "age_seconds": None}
    try:
        age = time.time() - path.stat().st_mtime
        status = json.loads(path.read_text())
        state = status.get("state", "running") if isinstance(status, dict) else "running"
        body = {"running": age < STALE_SECONDS and state == "running", "status": status,
                "age_seconds": round(age, 1)}
        if state == "failed":
            body["error"] = status.get("error")
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:  # unreadable or damaged: say so rather than fail
        body["error"] = f"cannot read {path.name}: {exc}"
    return body
