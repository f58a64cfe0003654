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
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from flowatlas.addresses import pack, unpack
from flowatlas.collect import ipfix, netflow5, netflow9, pending, sequence, sflow, templates
from flowatlas.collect.batch import I64, PAD, Messages, be16, gather_records, walk
from flowatlas.collect.columns import Columns, to_table
from flowatlas.collect.flows import OPTIONS_WANTED, WANTED, Scalar, flow_columns
from flowatlas.collect.message import Message, MessageError
from flowatlas.collect.pending import PendingBuffer, PendingSet
from flowatlas.collect.records import RecordError, Values, decode_rows, decode_set
from flowatlas.collect.sampling import SamplingRates
from flowatlas.collect.sequence import SequenceTracker, Unit
from flowatlas.collect.sources import SourceLookup
from flowatlas.collect.status import DEFAULT_MAX_EXPORTERS, CollectorStatus, ExporterCounters
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


OPTIONS_SEEN_BYTES = 4 << 20
"""Payload bytes of remembered options data sets before the memo is cleared."""


@dataclass(frozen=True)
class StateLimits:
    """Caps on what the decoder holds per exporter and in total (collect/bounded.py); the
    collector takes them from the ``collector`` settings of the same names."""

    template_max_bytes_per_exporter: int = templates.DEFAULT_MAX_BYTES_PER_EXPORTER
    template_max_bytes: int = templates.DEFAULT_MAX_BYTES
    pending_max_bytes_per_exporter: int = pending.DEFAULT_MAX_BYTES_PER_EXPORTER
    pending_max_bytes: int = pending.DEFAULT_MAX_BYTES
    sequence_max_streams_per_exporter: int = sequence.DEFAULT_MAX_STREAMS_PER_EXPORTER
    sequence_max_streams: int = sequence.DEFAULT_MAX_STREAMS
    sequence_max_gap: int = sequence.DEFAULT_MAX_GAP
    status_max_exporters: int = DEFAULT_MAX_EXPORTERS

    @classmethod
    def of(cls, settings: object) -> StateLimits:
        """The limits among ``settings``' attributes (a CollectorSettings)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)
                      if hasattr(settings, f.name)})


class Decoder:
    def __init__(self, registry: SourceLookup | None = None,
                 state_path: str | Path | None = None, *, template_ttl: float = 7200.0,
                 pending_seconds: float = 10.0, limits: StateLimits | None = None) -> None:
        self.registry = registry
        self.state_path = Path(state_path) if state_path is not None else None
        self.limits = lim = limits or StateLimits()
        self.status = CollectorStatus(lim.status_max_exporters)
        self.templates = TemplateCache(
            ttl=template_ttl, max_bytes_per_exporter=lim.template_max_bytes_per_exporter,
            max_bytes=lim.template_max_bytes)
        self.sampling = SamplingRates()
        self.pending = PendingBuffer(
            max_age=pending_seconds, max_bytes=lim.pending_max_bytes,
            max_bytes_per_exporter=lim.pending_max_bytes_per_exporter)
        self.sequences = SequenceTracker(
            lim.sequence_max_streams,
            max_streams_per_exporter=lim.sequence_max_streams_per_exporter,
            max_gap=lim.sequence_max_gap)
        self._unregistered_logged: set[bytes] = set()
        self._errors_logged: set[str] = set()
        self._options_seen: dict[TemplateKey, tuple[Template, bytes, int]] = {}
        """Options data set last applied per key: exporters resend the same one with every
        template refresh, and applying it again would change nothing."""
        self._options_seen_bytes = 0
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
        """Decode a batch of (datagram, exporter) pairs into one table (None: no rows)."""
        chunks = [bytes(d) for d, _ in datagrams]
        return self.decode_buffer(b"".join(chunks), [len(c) for c in chunks],
                                  [e for _, e in datagrams], received_at)

    def decode_buffer(self, buffer: bytes | bytearray | memoryview, lengths: Sequence[int],
                      exporters: Sequence[str | bytes],
                      received_at: float | datetime | None = None) -> pa.Table | None:
        """Decode datagrams lying end to end in ``buffer`` (the server's receive buffer).

        NetFlow v9 and IPFIX messages of the whole batch are walked together and the data
        sets that share a template are decoded in one numpy pass; v5 records and sFlow
        headers are batched the same way. The table is built once.
        """
        if received_at is None:
            now = time.time()
        elif isinstance(received_at, datetime):
            now = received_at.timestamp()
        else:
            now = float(received_at)
        batch = _Batch()
        try:
            self._decode_buffer(bytes(buffer), lengths, exporters, now, batch)
        except Exception as exc:  # the collector must never fall over on one batch
            self._internal_error(bytes(16), exc)
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
        self.refresh_state_status()

    def refresh_state_status(self) -> None:
        """Put what the bounded state holds, per exporter and in total, into the status."""
        t, p, q = self.templates, self.pending, self.sequences
        for exp, c in self.status.exporters.items():
            c.templates = t.count_for(exp)
            c.template_bytes = t.bytes_for(exp)
            c.templates_evicted = t.evicted_for(exp)
            c.pending_bytes = p.bytes_for(exp)
            c.sequence_streams_evicted = q.evicted_for(exp)
        self.status.held = {
            "templates": {"count": len(t), "bytes": t.total_bytes, "max_bytes": t.max_bytes,
                          "max_bytes_per_exporter": t.max_bytes_per_exporter},
            "pending": {"sets": len(p), "bytes": p.total_bytes, "max_bytes": p.max_bytes,
                        "max_bytes_per_exporter": p.max_bytes_per_exporter},
            "sequences": {"streams": len(q), "max_streams": q.max_streams,
                          "max_streams_per_exporter": q.max_streams_per_exporter,
                          "max_gap": q.max_gap},
        }

    # -- dispatch ---------------------------------------------------------------------------

    def _decode_buffer(self, raw: bytes, lengths: Sequence[int], exporters: Sequence[str | bytes],
                       now: float, batch: _Batch) -> None:
        self._now = now
        if now - self._last_sweep >= 1.0:
            self.sweep(now)
        n = len(lengths)
        if n == 0:
            return
        length = np.asarray(lengths, dtype=np.int64)
        start = np.cumsum(length) - length
        buf = np.zeros(len(raw) + PAD, dtype=np.uint8)
        buf[:len(raw)] = np.frombuffer(raw, dtype=np.uint8)
        # Exporters: counted and checked against the registry once per address, not per datagram.
        index = {e: i for i, e in enumerate(dict.fromkeys(exporters))}
        exp_idx = np.fromiter(map(index.__getitem__, exporters), dtype=np.int64, count=n)
        per_exporter = np.bincount(exp_idx, minlength=len(index)).tolist()
        addresses: list[bytes] = []
        admitted = np.zeros(len(index), dtype=bool)
        for (exporter, i), count in zip(index.items(), per_exporter, strict=True):
            try:
                exp = exporter_bytes(exporter)
            except ValueError:
                addresses.append(bytes(16))
                for _ in range(count):
                    self.status.skip(bytes(16), "bad_exporter_address")
                continue
            addresses.append(exp)
            admitted[i] = self._admit(exp, count, now, batch)
        ok = admitted[exp_idx]
        version = np.where(length >= 2, be16(buf, start), -1)
        templated = ok & (length >= 4) & ((version == 9) | (version == 10))
        v5 = ok & (version == 5) & netflow5.well_formed(buf, start, length)
        for i in np.flatnonzero(ok & ~templated & ~v5).tolist():
            exp = addresses[exp_idx[i]]
            data = raw[start[i]:start[i] + length[i]]
            try:
                self._dispatch(data, exp, self.status.of(exp), batch)
            except Exception as exc:
                self._internal_error(exp, exc)
        picked = np.flatnonzero(v5)
        if len(picked):
            self._v5_batch(buf, start[picked], exp_idx[picked], addresses, batch)
        picked = np.flatnonzero(templated)
        if len(picked):
            exps = [addresses[i] for i in exp_idx[picked].tolist()]
            self._templated_batch(raw, buf, start[picked], length[picked], exps,
                                  exp_idx[picked], batch)

    def _admit(self, exp: bytes, count: int, now: float, batch: _Batch) -> bool:
        """Count ``count`` datagrams from ``exp``; False when the exporter is unregistered."""
        c = self.status.of(exp)
        c.packets += count
        c.last_seen = now
        if self.registry is None or exp in batch.sources:
            return True
        source = self.registry.lookup(exp)
        if source is None:
            c.unregistered += count
            if exp not in self._unregistered_logged and len(self._unregistered_logged) < 4096:
                self._unregistered_logged.add(exp)  # bounded: spoofed sources are endless
                log.warning("flows from unregistered exporter %s are not stored", unpack(exp))
            return False
        batch.sources[exp] = (source.source_id, source.sampling)
        return True

    def _dispatch(self, data: bytes, exp: bytes, c: ExporterCounters, batch: _Batch) -> None:
        if len(data) < 4:
            self.status.skip(exp, "truncated_header")
            return
        # Well-formed v5 and every v9/IPFIX message of length >= 4 were batched by the caller;
        # what is left is sFlow, malformed v5 (counted by reason) and the unknown.
        version = int.from_bytes(data[:2], "big")
        if version == 5:
            self.status.skip(exp, f"v5_{netflow5.rejection(data)}")
            return
        if version == 0 and data[2:4] == b"\x00\x05":
            self._sflow(data, exp, c, batch, int(self._now * 1_000_000))
        else:
            self.status.skip(exp, "unknown_version")
            return
        c.versions.add(5 if version == 0 else version)

    def _finish(self, batch: _Batch) -> pa.Table | None:
        parts: list[tuple[bytes, int, Columns]] = list(batch.parts)
        for exp, samples in batch.sflow.items():
            c = self.status.of(exp)
            missing, dropped = sflow.account(self.sequences, exp, samples.runs)
            c.sflow_sample_gaps += missing
            c.sflow_drops += dropped
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

    def _v5_batch(self, buf: npt.NDArray[np.uint8], start: I64, exp_idx: I64,
                  addresses: list[bytes], batch: _Batch) -> None:
        """Well-formed v5 datagrams of one batch: headers and records gathered per exporter."""
        h = netflow5.headers(buf, start)
        for e in np.unique(exp_idx).tolist():
            mine = exp_idx == e
            exp = addresses[e]
            c = self.status.of(exp)
            c.versions.add(5)
            count = h.count[mine]
            domains = h.domain[mine]
            for domain in np.unique(domains).tolist():
                same = domains == domain
                self._sequences(c, (exp, domain, 5), h.sequence[mine][same], count[same],
                                Unit.RECORDS)
            records = gather_records(buf, start[mine] + netflow5.HEADER.size, count,
                                     netflow5.RECORD.itemsize)
            cols = netflow5.decode_records(records, np.repeat(h.export_us[mine], count),
                                           np.repeat(h.uptime_ms[mine], count))
            cols["sampling_rate"] = np.repeat(h.sampling_rate[mine], count).astype(np.uint32)
            batch.parts.append((exp, int(count.sum()), cols))

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
        if dg.bad_gateway:
            self.status.skip(exp, "sflow_bad_gateway_record", count=dg.bad_gateway)
        samples.note(dg)  # sample gaps and drops are counted per batch, in _finish

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
            elif self.templates.get(key) is None:  # alone over the per-exporter cap
                self._flush_group(batch, key)
                self.status.skip(exp, f"v{version}_template_over_cap", malformed=False)
                continue  # its held data sets stay held and time out as unknown-template
            for held in self.pending.take(key):
                c.pending -= 1
                if template.min_record_length:
                    self._data_set(batch, key, template, held.data, 0, len(held.data),
                                   held.export_us, held.uptime_ms)
        if msg.templates or msg.withdrawn or msg.withdraw_all:
            c.templates = self.templates.count_for(exp)
            c.template_bytes = self.templates.bytes_for(exp)
        records = 0
        held_back = False
        lookup = self.templates.get
        groups = batch.groups
        for tid, start, end in msg.data_sets:
            key = (exp, version, msg.domain, tid)
            known = lookup(key)
            if known is None:
                held_back = True
                self._hold(key, c, PendingSet(self._now, msg.export_us, msg.uptime_ms,
                                              data[start:end]))
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
        self._sequence_templated(exp, c, version, msg.domain, msg.sequence, records, held_back)

    def _templated_batch(self, raw: bytes, buf: npt.NDArray[np.uint8], start: I64, length: I64,
                         exps: list[bytes], exp_idx: I64, batch: _Batch) -> None:
        """v9/IPFIX messages of one batch, in order.

        Runs of messages that change no template (the vast majority: softflowd refreshes
        unchanged templates every few messages) are decoded together by :meth:`_segment`; a
        message that defines, redefines or withdraws a template, or that the parallel walk
        could not parse, goes through the per-message path at its place in the order.
        """
        m = walk(buf, start, length)
        for exp, version in set(zip(exps, m.version.tolist(), strict=True)):
            self.status.of(exp).versions.add(version)
        stream = (exp_idx << 33) | ((m.version == 10).astype(np.int64) << 32) | m.domain
        streams = np.unique(stream, return_inverse=True)[1].astype(np.int64)
        ctx = _Walked(raw, buf, m, exps, streams)
        # Template and options template sets of the whole batch, listed per message at once.
        control: dict[int, list[tuple[int, int, int]]] = {}
        rows = np.flatnonzero(m.set_id < 256)
        for i, sid, body, end in zip(m.set_msg[rows].tolist(), m.set_id[rows].tolist(),
                                     m.set_body[rows].tolist(), m.set_end[rows].tolist(),
                                     strict=True):
            control.setdefault(i, []).append((sid, body, end))
        versions, domains = m.version.tolist(), m.domain.tolist()
        first = 0
        for i in np.flatnonzero(m.python | m.control).tolist():
            if not m.python[i] and self._refresh_only(raw, exps[i], versions[i], domains[i],
                                                      control[i]):
                continue  # its data sets stay in the run
            self._segment(ctx, first, i, batch)
            exp = exps[i]
            try:
                self._templated(raw[start[i]:start[i] + length[i]], exp, self.status.of(exp),
                                batch)
            except Exception as exc:
                self._internal_error(exp, exc)
            first = i + 1
        self._segment(ctx, first, len(start), batch)

    def _refresh_only(self, raw: bytes, exp: bytes, version: int, domain: int,
                      sets: list[tuple[int, int, int]]) -> bool:
        """Refresh a message's templates (``sets``: its (set id, body, end) control sets) if
        none of them is new, changed or withdrawn."""
        found: list[Template] = []
        for sid, body, end in sets:
            parsed = _template_set(version, sid, raw[body:end])
            if parsed is None:
                return False
            found.extend(parsed)
        keyed = [((exp, version, domain, t.template_id), t) for t in found]
        for key, t in keyed:  # identity first: the parsed sets are cached, so usually true
            old = self.templates.get(key)
            if old is not t and old != t:
                return False
        for key, t in keyed:
            self.templates.put(key, t, self._now)
        return True

    def _segment(self, ctx: _Walked, first: int, last: int, batch: _Batch) -> None:
        """Decode the data sets of messages ``first`` .. ``last - 1`` grouped by template."""
        if first >= last:
            return
        m = ctx.m
        rows = m.sets_of(first, last)
        data = m.set_id[rows] >= 256
        msg = m.set_msg[rows][data]
        tid = m.set_id[rows][data]
        body = m.set_body[rows][data]
        size = m.set_end[rows][data] - body
        records = np.zeros(last - first, dtype=np.int64)
        held = np.zeros(last - first, dtype=bool)
        if len(msg):
            keys, inverse = np.unique((ctx.streams[msg] << 16) | tid, return_inverse=True)
            order = np.argsort(inverse, kind="stable")
            bounds = np.searchsorted(inverse[order], np.arange(len(keys) + 1))
            for k in range(len(keys)):
                sets = order[bounds[k]:bounds[k + 1]]
                i = int(msg[sets[0]])
                key = (ctx.exps[i], int(m.version[i]), int(m.domain[i]), int(tid[sets[0]]))
                try:
                    self._key_sets(ctx, key, msg[sets], body[sets], size[sets], records, held,
                                   first, batch)
                except Exception as exc:
                    self._internal_error(key[0], exc)
        streams = ctx.streams[first:last]
        for s in np.unique(streams).tolist():
            mine = np.flatnonzero(streams == s)
            i = first + int(mine[0])
            exp, version, domain = ctx.exps[i], int(m.version[i]), int(m.domain[i])
            c = self.status.of(exp)
            if not held[mine].any():
                unit = Unit.RECORDS if version == 10 else Unit.LEARN
                self._sequences(c, (exp, domain, version), m.sequence[first + mine],
                                records[mine], unit)
                continue
            for j in mine.tolist():
                self._sequence_templated(exp, c, version, domain, int(m.sequence[first + j]),
                                         int(records[j]), bool(held[j]))

    def _key_sets(self, ctx: _Walked, key: TemplateKey, msg: I64, body: I64, size: I64,
                  records: I64, held: npt.NDArray[np.bool_], first: int, batch: _Batch) -> None:
        """The data sets of one template key within a run of messages."""
        exp, version = key[0], key[1]
        m = ctx.m
        template = self.templates.get(key)
        if template is None:
            c = self.status.of(exp)
            held[msg - first] = True
            for i, b, n in zip(msg.tolist(), body.tolist(), size.tolist(), strict=True):
                uptime = int(m.uptime_ms[i]) if version == 9 else None
                self._hold(key, c, PendingSet(self._now, int(m.export_us[i]), uptime,
                                              ctx.raw[b:b + n]))
            return
        reclen = template.fixed_length
        if not reclen:  # options, variable-length or empty templates: per set
            for i, b, n in zip(msg.tolist(), body.tolist(), size.tolist(), strict=True):
                uptime = int(m.uptime_ms[i]) if version == 9 else None
                records[i - first] += self._data_set(batch, key, template, ctx.raw, b, b + n,
                                                     int(m.export_us[i]), uptime)
            return
        counts = size // reclen
        total = int(counts.sum())
        if total == 0:
            return
        matrix = gather_records(ctx.buf, body, counts, reclen)
        values = decode_rows(template, matrix, WANTED)
        export = np.repeat(m.export_us[msg], counts)
        uptimes = np.repeat(m.uptime_ms[msg], counts) if version == 9 else None
        batch.parts.append((exp, total, self._columns(key, values, total, export, uptimes)))
        np.add.at(records, msg - first, counts)

    def _hold(self, key: TemplateKey, c: ExporterCounters, item: PendingSet) -> None:
        """Keep a data set until its template arrives; what the buffer pushes out for room
        is counted as unknown-template data of its own exporter."""
        c.pending += 1
        for dropped in self.pending.add(key, item):
            d = self.status.of(dropped[0])
            d.unknown_template += 1
            d.pending -= 1

    def _data_set(self, batch: _Batch, key: TemplateKey, template: Template, data: bytes,
                  start: int, end: int, export_us: int, uptime_ms: int | None) -> int:
        """Queue (fixed length) or decode one data set; returns its record count."""
        exp, version = key[0], key[1]
        if template.is_options or template.variable or template.fixed_length:
            try:
                if template.is_options:
                    return self._options_set(key, template, data[start:end])
                n, values = decode_set(template, data, start, end, WANTED)
            except RecordError:
                self.status.skip(exp, f"v{version}_bad_data_set")
                return 0
            if n:
                batch.parts.append((exp, n, self._columns(key, values, n, export_us, uptime_ms)))
            return n
        self.status.skip(exp, f"v{version}_bad_template")  # zero-length records
        return 0

    def _options_set(self, key: TemplateKey, template: Template, payload: bytes) -> int:
        """Learn sampling rates and boot times from one options data set; its record count."""
        seen = self._options_seen.get(key)
        if seen is not None and seen[0] is template and seen[1] == payload:
            return seen[2]
        exp, version, domain, _ = key
        generation = self.sampling.generation
        n, values = decode_set(template, payload, 0, len(payload), OPTIONS_WANTED)
        self.sampling.learn(exp, version, domain, values, n)
        self.sampling.learn_init_time(exp, version, domain, values)
        if (self.sampling.generation != generation or len(self._options_seen) >= 65536
                or self._options_seen_bytes > OPTIONS_SEEN_BYTES):
            self._options_seen.clear()  # what another set taught may just have been overridden
            self._options_seen_bytes = 0
        self._options_seen[key] = (template, payload, n)
        self._options_seen_bytes += len(payload)
        return n

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

    def _sequence_templated(self, exp: bytes, c: ExporterCounters, version: int, domain: int,
                            sequence: int, records: int, held_back: bool) -> None:
        exp_key = (exp, domain, version)
        if held_back:
            # Records held for a template are not counted yet; restart the count after them.
            self.sequences.forget(exp_key)
            return
        unit = Unit.RECORDS if version == 10 else Unit.LEARN
        self._sequence(c, exp_key, sequence, records, unit)

    def _sequences(self, c: ExporterCounters, key: tuple[bytes, int, int], seqs: I64,
                   counts: I64, unit: Unit) -> None:
        gaps, lost, resets = self.sequences.observe_many(key, seqs, counts, unit)
        c.sequence_gaps += gaps
        c.lost += lost
        c.sequence_resets += resets

    def _sequence(self, c: ExporterCounters, key: tuple[bytes, int, int], seq: int, count: int,
                  unit: Unit) -> None:
        step = self.sequences.observe(key, seq, count, unit)
        if step.gap:
            c.sequence_gaps += 1
            c.lost += step.lost
        c.sequence_resets += step.restarted


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
    sflow: dict[bytes, sflow.SFlowSamples] = field(default_factory=dict)
    parts: list[tuple[bytes, int, Columns]] = field(default_factory=list)
    sources: dict[bytes, tuple[int, int | None]] = field(default_factory=dict)


@dataclass
class _Walked:
    """One batch of v9/IPFIX messages after the parallel walk."""

    raw: bytes
    buf: npt.NDArray[np.uint8]
    m: Messages
    exps: list[bytes]
    streams: I64
    """Per message: index of its (exporter, version, domain) within the batch."""


TEMPLATE_SET_CACHE_PAYLOAD = 1024
"""Template sets up to this size are parsed once per distinct payload; bigger ones (rare: a
set of 250 fields) every time, so the parse cache holds at most 512 x 1 KiB of payload and
the few templates that fit in it."""


def _template_set(version: int, set_id: int, payload: bytes) -> tuple[Template, ...] | None:
    """Templates of one template or options template set, parsed once per distinct payload
    (exporters resend identical sets every few messages); None for withdrawals, reserved set
    ids or anything the parser rejects (the per-message path then counts the reason)."""
    if len(payload) <= TEMPLATE_SET_CACHE_PAYLOAD:
        return _template_set_cached(version, set_id, payload)
    return _parse_template_set(version, set_id, payload)


@functools.lru_cache(maxsize=512)
def _template_set_cached(version: int, set_id: int,
                         payload: bytes) -> tuple[Template, ...] | None:
    return _parse_template_set(version, set_id, payload)


def _parse_template_set(version: int, set_id: int,
                        payload: bytes) -> tuple[Template, ...] | None:
    msg = Message(version, 0, 0, 0, None)
    try:
        if version == 9 and set_id in (0, 1):
            netflow9.template_set(payload, set_id, msg)
        elif version == 10 and set_id in (2, 3):
            ipfix.template_set(payload, set_id, msg)
        else:
            return ()  # reserved set ids carry nothing flowatlas reads
    except (MessageError, struct.error):
        return None
    if msg.withdrawn or msg.withdraw_all:
        return None
    return tuple(msg.templates)
