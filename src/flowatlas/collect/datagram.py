"""The pure decoding API: one datagram in, canonical flow rows out. No sockets.

    decoder = Decoder(registry=None, state_path=None)
    table = decoder.decode(datagram, exporter="192.0.2.1", received_at=time.time())

``decode_many`` takes a batch of datagrams (the server's path). Both dispatch on the version
(NetFlow v5, v9, IPFIX, sFlow v5), never raise, and
counts everything it skips by reason in ``decoder.status``. Template and sampling state lives in
the decoder and is saved to ``state_path`` (JSON) by :meth:`Decoder.save_state`, so a restart
keeps decoding without waiting for the next template refresh.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from flowatlas.addresses import pack, unpack
from flowatlas.collect import ipfix, netflow5, netflow9, sflow
from flowatlas.collect.columns import Columns, to_table
from flowatlas.collect.flows import OPTIONS_WANTED, WANTED, Scalar, flow_columns
from flowatlas.collect.message import Message, MessageError
from flowatlas.collect.pending import PendingBuffer, PendingSet
from flowatlas.collect.records import RecordError, Values, decode_set
from flowatlas.collect.sampling import SamplingRates
from flowatlas.collect.sequence import SequenceTracker, Unit
from flowatlas.collect.sources import SourceRegistry
from flowatlas.collect.status import CollectorStatus, ExporterCounters
from flowatlas.collect.templates import Template, TemplateCache, TemplateKey

log = logging.getLogger("flowatlas.collect")

STATE_FORMAT = 2


@functools.lru_cache(maxsize=65536)
def exporter_bytes(exporter: str | bytes) -> bytes:
    """An exporter given as text, 4 or 16 raw bytes, to the canonical 16-byte form."""
    if isinstance(exporter, bytes):
        if len(exporter) == 16:
            return exporter
        if len(exporter) == 4:
            return pack(ipaddress.IPv4Address(exporter))
        raise ValueError(f"exporter address of {len(exporter)} bytes")
    return pack(exporter.split("%", 1)[0])


class Decoder:
    def __init__(self, registry: SourceRegistry | None = None,
                 state_path: str | Path | None = None, *, template_ttl: float = 7200.0,
                 pending_seconds: float = 10.0) -> None:
        self.registry = registry
        self.state_path = Path(state_path) if state_path is not None else None
        self.status = CollectorStatus()
        self.templates = TemplateCache(ttl=template_ttl)
        self.sampling = SamplingRates()
        self.pending = PendingBuffer(max_age=pending_seconds)
        self.sequences = SequenceTracker()
        self._unregistered_logged: set[bytes] = set()
        self._errors_logged: set[str] = set()
        self._last_sweep = 0.0
        self._now = 0.0
        if self.state_path is not None:
            self.load_state()

    # -- public API -------------------------------------------------------------------------

    def decode(self, datagram: bytes, exporter: str | bytes,
               received_at: float | datetime | None = None) -> pa.Table | None:
        """Decode one datagram from ``exporter``; None when it yields no flow rows."""
        return self.decode_many([(datagram, exporter)], received_at)

    def decode_many(self, datagrams: Sequence[tuple[bytes, str | bytes]],
                    received_at: float | datetime | None = None) -> pa.Table | None:
        """Decode a batch of (datagram, exporter) pairs into one table (None: no rows).

        Data sets that share a template are decoded together in one numpy pass, and the
        table is built once, which is what makes a busy collector fast: the server hands
        over whatever its sockets hold at each wake-up.
        """
        if received_at is None:
            now = time.time()
        elif isinstance(received_at, datetime):
            now = received_at.timestamp()
        else:
            now = float(received_at)
        batch = _Batch()
        for datagram, exporter in datagrams:
            try:
                exp = exporter_bytes(exporter)
            except ValueError:
                self.status.skip(bytes(16), "bad_exporter_address")
                continue
            try:
                self._decode(bytes(datagram), exp, now, batch)
            except Exception as exc:  # the collector must never fall over on one datagram
                self._internal_error(exp, exc)
        try:
            return self._finish(batch)
        except Exception as exc:
            self._internal_error(bytes(16), exc)
            return None

    def _internal_error(self, exp: bytes, exc: Exception) -> None:
        reason = f"internal_error_{type(exc).__name__}"
        self.status.skip(exp, reason)
        if reason not in self._errors_logged:
            self._errors_logged.add(reason)
            log.error("datagram from %s could not be decoded", unpack(exp), exc_info=exc)

    def save_state(self) -> None:
        """Write templates and sampling rates atomically to ``state_path`` (if any)."""
        if self.state_path is None:
            return
        data = {"format": STATE_FORMAT, "saved": time.time(),
                "templates": self.templates.to_json(), "sampling": self.sampling.to_json()}
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.state_path)
        self.templates.changed = self.sampling.changed = False

    @property
    def state_dirty(self) -> bool:
        return self.templates.changed or self.sampling.changed

    def load_state(self) -> None:
        if self.state_path is None or not self.state_path.exists():
            return
        try:
            data = json.loads(self.state_path.read_text())
            if data.get("format") != STATE_FORMAT:
                raise ValueError(f"unknown state format {data.get('format')!r}")
            self.templates.load_json(data["templates"], time.time())
            self.sampling.load_json(data["sampling"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring collector state %s: %s", self.state_path, exc)

    def sweep(self, now: float) -> None:
        """Expire old templates and pending data (done by decode about once a second)."""
        self._last_sweep = now
        self.templates.expire(now)
        for key in self.pending.expire(now):
            c = self.status.of(key[0])
            c.unknown_template += 1
            c.pending -= 1

    # -- dispatch ---------------------------------------------------------------------------

    def _decode(self, data: bytes, exp: bytes, now: float, batch: _Batch) -> None:
        self._now = now
        if now - self._last_sweep >= 1.0:
            self.sweep(now)
        c = self.status.of(exp)
        c.packets += 1
        c.last_seen = now
        if self.registry is not None and exp not in batch.sources:
            source = self.registry.lookup(exp)
            if source is None:
                c.unregistered += 1
                if exp not in self._unregistered_logged:
                    self._unregistered_logged.add(exp)
                    log.warning("flows from unregistered exporter %s are not stored", unpack(exp))
                return
            batch.sources[exp] = (source.source_id, source.sampling)
        if len(data) < 4:
            self.status.skip(exp, "truncated_header")
            return
        version = int.from_bytes(data[:2], "big")
        if version == 5:
            self._v5(data, exp, c, batch)
        elif version in (9, 10):
            self._templated(data, exp, c, batch)
        elif version == 0 and data[2:4] == b"\x00\x05":
            self._sflow(data, exp, c, batch, int(now * 1_000_000))
        else:
            self.status.skip(exp, "unknown_version")
            return
        c.versions.add(5 if version == 0 else version)

    def _finish(self, batch: _Batch) -> pa.Table | None:
        parts: list[tuple[bytes, int, Columns]] = list(batch.parts)
        for exp, v5 in batch.v5.items():
            cols = netflow5.decode_records(b"".join(v5.chunks), v5.per_record(v5.export_us),
                                           v5.per_record(v5.uptime_ms))
            cols["sampling_rate"] = v5.per_record(v5.rates).astype(np.uint32)
            parts.append((exp, sum(v5.counts), cols))
        for exp, samples in batch.sflow.items():
            parts.append((exp, len(samples), sflow.columns(samples)))
        for group in batch.groups.values():
            parts.extend(self._group(group))
        for exp, n, cols in parts:
            source_id, sampling = batch.sources.get(exp, (0, None))
            cols["exporter"] = np.broadcast_to(np.frombuffer(exp, dtype=np.uint8), (n, 16))
            cols["source_id"] = np.full(n, source_id, dtype=np.uint32)
            if sampling is not None:
                cols["sampling_rate"] = np.full(n, sampling, dtype=np.uint32)
            self.status.of(exp).records += n
        return to_table([(n, cols) for _, n, cols in parts])

    # -- NetFlow v5 -------------------------------------------------------------------------

    def _v5(self, data: bytes, exp: bytes, c: ExporterCounters, batch: _Batch) -> None:
        try:
            h = netflow5.parse_header(data)
        except netflow5.V5Error as exc:
            self.status.skip(exp, f"v5_{str(exc).replace(' ', '_')}")
            return
        self._sequence(c, (exp, h.domain, 5), h.sequence, h.count, Unit.RECORDS)
        group = batch.v5.get(exp)
        if group is None:
            group = batch.v5[exp] = _Chunks()
        end = netflow5.HEADER.size + h.count * netflow5.RECORD.itemsize
        group.add(data[netflow5.HEADER.size:end], h.count, h.export_us, h.uptime_ms,
                  h.sampling_rate)

    # -- sFlow v5 ---------------------------------------------------------------------------

    def _sflow(self, data: bytes, exp: bytes, c: ExporterCounters, batch: _Batch,
               received_us: int) -> None:
        samples = batch.sflow.get(exp)
        if samples is None:
            samples = batch.sflow[exp] = sflow.SFlowSamples()
        try:
            dg = sflow.walk(data, received_us, samples)
        except sflow.SFlowError as exc:
            self.status.skip(exp, f"sflow_{str(exc).replace(' ', '_')}")
            return
        self._sequence(c, (exp, dg.sub_agent, 0x5F), dg.sequence, 1, Unit.PACKETS)

    # -- NetFlow v9 and IPFIX ---------------------------------------------------------------

    def _templated(self, data: bytes, exp: bytes, c: ExporterCounters, batch: _Batch) -> None:
        version = data[1]
        try:
            msg = (netflow9.parse if version == 9 else ipfix.parse)(data)
        except MessageError as exc:
            self.status.skip(exp, f"v{version}_{exc.reason}")
            return
        base = (exp, version, msg.domain)
        if msg.withdraw_all:
            self.templates.withdraw_all(*base)
        for tid in msg.withdrawn:
            self.templates.withdraw((*base, tid))
        for template in msg.templates:
            key = (*base, template.template_id)
            if self.templates.put(key, template, self._now):
                self._flush_group(batch, key)  # sets batched under the old definition
            for held in self.pending.take(key):
                c.pending -= 1
                if template.min_record_length:
                    self._data_set(batch, key, template, held.data, 0, len(held.data),
                                   held.export_us, held.uptime_ms)
        if msg.templates or msg.withdrawn or msg.withdraw_all:
            c.templates = self.templates.count_for(exp)
        records = 0
        held_back = False
        lookup = self.templates.get
        groups = batch.groups
        for tid, start, end in msg.data_sets:
            key = (exp, version, msg.domain, tid)
            known = lookup(key)
            if known is None:
                held_back = True
                item = PendingSet(self._now, msg.export_us, msg.uptime_ms, data[start:end])
                c.pending += 1
                for dropped in self.pending.add(key, item):
                    d = self.status.of(dropped[0])
                    d.unknown_template += 1
                    d.pending -= 1
                continue
            reclen = known.fixed_length
            if reclen:  # the hot path: queue the set's records for one numpy pass per template
                n = (end - start) // reclen
                if n:
                    group = groups.get(key)
                    if group is None:
                        group = groups[key] = _TemplateGroup(key, known)
                    group.sets.append((data[start:start + n * reclen], n, msg.export_us,
                                       msg.uptime_ms or 0))
                    records += n
                continue
            records += self._data_set(batch, key, known, data, start, end, msg.export_us,
                                      msg.uptime_ms)
        if msg.error is not None:
            self.status.skip(exp, f"v{version}_{msg.error.reason}")
        self._sequence_templated(exp, c, msg, records, held_back)

    def _data_set(self, batch: _Batch, key: TemplateKey, template: Template, data: bytes,
                  start: int, end: int, export_us: int, uptime_ms: int | None) -> int:
        """Queue (fixed length) or decode one data set; returns its record count."""
        exp, version, domain, _ = key
        if template.is_options or template.variable or template.fixed_length:
            try:
                if template.is_options:
                    n, values = decode_set(template, data, start, end, OPTIONS_WANTED)
                    self.sampling.learn(exp, version, domain, values, n)
                    self.sampling.learn_init_time(exp, version, domain, values)
                    return n
                n, values = decode_set(template, data, start, end, WANTED)
            except RecordError:
                self.status.skip(exp, f"v{version}_bad_data_set")
                return 0
            if n:
                batch.parts.append((exp, n, self._columns(key, values, n, export_us, uptime_ms)))
            return n
        self.status.skip(exp, f"v{version}_bad_template")  # zero-length records
        return 0

    def _flush_group(self, batch: _Batch, key: TemplateKey) -> None:
        group = batch.groups.pop(key, None)
        if group is not None:
            batch.parts.extend(self._group(group))

    def _group(self, group: _TemplateGroup) -> list[tuple[bytes, int, Columns]]:
        chunks, counts, export_us, uptime_ms = zip(*group.sets, strict=True)
        buf = b"".join(chunks)
        n, values = decode_set(group.template, buf, 0, len(buf), WANTED)
        if n == 0:
            return []
        per_record = np.asarray(counts, dtype=np.int64)
        export = np.repeat(np.asarray(export_us, dtype=np.int64), per_record)
        uptime = np.repeat(np.asarray(uptime_ms, dtype=np.int64), per_record) \
            if group.key[1] == 9 else None
        cols = self._columns(group.key, values, n, export, uptime)
        return [(group.key[0], n, cols)]

    def _columns(self, key: TemplateKey, values: Values, n: int, export_us: Scalar,
                 uptime_ms: Scalar | None) -> Columns:
        exp, version, domain, _ = key
        cols = flow_columns(values, n, version=version, export_us=export_us, uptime_ms=uptime_ms,
                            init_ms=self.sampling.init_time(exp, version, domain))
        rates = self.sampling.for_records(exp, version, domain, values, n)
        cols["sampling_rate"] = np.minimum(rates, np.uint64(0xFFFFFFFF)).astype(np.uint32)
        return cols

    def _sequence_templated(self, exp: bytes, c: ExporterCounters, msg: Message, records: int,
                            held_back: bool) -> None:
        exp_key = (exp, msg.domain, msg.version)
        if held_back:
            # Records held for a template are not counted yet; restart the count after them.
            self.sequences.forget(exp_key)
            return
        unit = Unit.RECORDS if msg.version == 10 else Unit.LEARN
        self._sequence(c, exp_key, msg.sequence, records, unit)

    def _sequence(self, c: ExporterCounters, key: tuple[bytes, int, int], seq: int, count: int,
                  unit: Unit) -> None:
        step = self.sequences.observe(key, seq, count, unit)
        if step.gap:
            c.sequence_gaps += 1
            c.lost += step.lost


@dataclass
class _Chunks:
    """Record bytes of several datagrams with the per-datagram header values they need."""

    chunks: list[bytes] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    export_us: list[int] = field(default_factory=list)
    uptime_ms: list[int] = field(default_factory=list)
    rates: list[int] = field(default_factory=list)

    def add(self, chunk: bytes, n: int, export_us: int, uptime_ms: int, rate: int) -> None:
        self.chunks.append(chunk)
        self.counts.append(n)
        self.export_us.append(export_us)
        self.uptime_ms.append(uptime_ms)
        self.rates.append(rate)

    def per_record(self, per_chunk: list[int]) -> npt.NDArray[np.int64]:
        return np.repeat(np.asarray(per_chunk, dtype=np.int64), self.counts)


class _TemplateGroup:
    """Data sets of one fixed-length template, decoded together in one numpy pass."""

    def __init__(self, key: TemplateKey, template: Template) -> None:
        self.key = key
        self.template = template
        self.sets: list[tuple[bytes, int, int, int]] = []
        """(records' bytes, record count, export time µs, v9 uptime ms) per data set."""


@dataclass
class _Batch:
    groups: dict[TemplateKey, _TemplateGroup] = field(default_factory=dict)
    v5: dict[bytes, _Chunks] = field(default_factory=dict)
    sflow: dict[bytes, sflow.SFlowSamples] = field(default_factory=dict)
    parts: list[tuple[bytes, int, Columns]] = field(default_factory=list)
    sources: dict[bytes, tuple[int, int | None]] = field(default_factory=dict)
