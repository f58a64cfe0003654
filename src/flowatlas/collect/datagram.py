"""The pure decoding API: one datagram in, canonical flow rows out. No sockets.

    decoder = Decoder(registry=None, state_path=None)
    table = decoder.decode(datagram, exporter="192.0.2.1", received_at=time.time())

``decode`` dispatches on the version (NetFlow v5, v9, IPFIX, sFlow v5), never raises, and
counts everything it skips by reason in ``decoder.status``. Template and sampling state lives in
the decoder and is saved to ``state_path`` (JSON) by :meth:`Decoder.save_state`, so a restart
keeps decoding without waiting for the next template refresh.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from flowatlas.addresses import pack, unpack
from flowatlas.collect import ipfix, netflow5, netflow9, sflow
from flowatlas.collect.columns import Columns, to_table
from flowatlas.collect.flows import OPTIONS_WANTED, WANTED, flow_columns
from flowatlas.collect.message import Message, MessageError
from flowatlas.collect.pending import PendingBuffer, PendingSet
from flowatlas.collect.records import RecordError, decode_set
from flowatlas.collect.sampling import SamplingRates
from flowatlas.collect.sequence import SequenceTracker, Unit
from flowatlas.collect.sources import SourceRegistry
from flowatlas.collect.status import CollectorStatus, ExporterCounters
from flowatlas.collect.templates import Template, TemplateCache, TemplateKey

log = logging.getLogger("flowatlas.collect")

STATE_FORMAT = 2
Part = tuple[int, Columns]


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
        try:
            exp = exporter_bytes(exporter)
        except ValueError:
            self.status.skip(bytes(16), "bad_exporter_address")
            return None
        if received_at is None:
            now = time.time()
        elif isinstance(received_at, datetime):
            now = received_at.timestamp()
        else:
            now = float(received_at)
        try:
            return self._decode(bytes(datagram), exp, now)
        except Exception as exc:  # the collector must never fall over on one datagram
            reason = f"internal_error_{type(exc).__name__}"
            self.status.skip(exp, reason)
            if reason not in self._errors_logged:
                self._errors_logged.add(reason)
                log.exception("datagram from %s could not be decoded", unpack(exp))
            return None

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

    def _decode(self, data: bytes, exp: bytes, now: float) -> pa.Table | None:
        self._now = now
        if now - self._last_sweep >= 1.0:
            self.sweep(now)
        c = self.status.of(exp)
        c.packets += 1
        c.last_seen = now
        source = None
        if self.registry is not None:
            source = self.registry.lookup(exp)
            if source is None:
                c.unregistered += 1
                if exp not in self._unregistered_logged:
                    self._unregistered_logged.add(exp)
                    log.warning("flows from unregistered exporter %s are not stored", unpack(exp))
                return None
        if len(data) < 4:
            self.status.skip(exp, "truncated_header")
            return None
        version = int.from_bytes(data[:2], "big")
        received_us = int(now * 1_000_000)
        handler: Callable[[bytes, bytes, ExporterCounters, int], list[Part]]
        if version == 5:
            handler = self._v5
        elif version in (9, 10):
            handler = self._templated
        elif version == 0 and data[2:4] == b"\x00\x05":
            handler = self._sflow
        else:
            self.status.skip(exp, "unknown_version")
            return None
        c.versions.add(5 if version == 0 else version)
        parts = handler(data, exp, c, received_us)
        table = self._finish(parts, exp, source.source_id if source else 0,
                             source.sampling if source else None)
        if table is not None:
            c.records += table.num_rows
        return table

    @staticmethod
    def _finish(parts: list[Part], exp: bytes, source_id: int,
                sampling: int | None) -> pa.Table | None:
        for n, cols in parts:
            if n:
                cols["exporter"] = np.broadcast_to(np.frombuffer(exp, dtype=np.uint8), (n, 16))
                cols["source_id"] = np.full(n, source_id, dtype=np.uint32)
                if sampling is not None:
                    cols["sampling_rate"] = np.full(n, sampling, dtype=np.uint32)
        return to_table(parts)

    # -- NetFlow v5 -------------------------------------------------------------------------

    def _v5(self, data: bytes, exp: bytes, c: ExporterCounters, received_us: int) -> list[Part]:
        try:
            pkt = netflow5.decode(data)
        except netflow5.V5Error as exc:
            self.status.skip(exp, f"v5_{str(exc).replace(' ', '_')}")
            return []
        self._sequence(c, (exp, pkt.domain, 5), pkt.sequence, pkt.count, Unit.RECORDS)
        pkt.columns["sampling_rate"] = np.full(pkt.count, pkt.sampling_rate, dtype=np.uint32)
        return [(pkt.count, pkt.columns)]

    # -- sFlow v5 ---------------------------------------------------------------------------

    def _sflow(self, data: bytes, exp: bytes, c: ExporterCounters, received_us: int) -> list[Part]:
        try:
            pkt = sflow.decode(data, received_us)
        except sflow.SFlowError as exc:
            self.status.skip(exp, f"sflow_{str(exc).replace(' ', '_')}")
            return []
        self._sequence(c, (exp, pkt.sub_agent, 0x5F), pkt.sequence, 1, Unit.PACKETS)
        return [(pkt.count, pkt.columns)]

    # -- NetFlow v9 and IPFIX ---------------------------------------------------------------

    def _templated(self, data: bytes, exp: bytes, c: ExporterCounters,
                   received_us: int) -> list[Part]:
        version = data[1]
        try:
            msg = (netflow9.parse if version == 9 else ipfix.parse)(data)
        except MessageError as exc:
            self.status.skip(exp, f"v{version}_{exc.reason}")
            return []
        parts: list[Part] = []
        base = (exp, version, msg.domain)
        if msg.withdraw_all:
            self.templates.withdraw_all(*base)
        for tid in msg.withdrawn:
            self.templates.withdraw((*base, tid))
        for template in msg.templates:
            key = (*base, template.template_id)
            self.templates.put(key, template, self._now)
            for held in self.pending.take(key):
                c.pending -= 1
                parts.extend(self._records(key, template, held.data, 0, len(held.data),
                                           held.export_us, held.uptime_ms)[0])
        if msg.templates or msg.withdrawn or msg.withdraw_all:
            c.templates = self.templates.count_for(exp)
        records = 0
        held_back = False
        for ds in msg.data_sets:
            key = (*base, ds.template_id)
            known = self.templates.get(key)
            if known is None:
                held_back = True
                item = PendingSet(self._now, msg.export_us, msg.uptime_ms, data[ds.start:ds.end])
                c.pending += 1
                for dropped in self.pending.add(key, item):
                    d = self.status.of(dropped[0])
                    d.unknown_template += 1
                    d.pending -= 1
                continue
            got, options = self._records(key, known, data, ds.start, ds.end, msg.export_us,
                                         msg.uptime_ms)
            records += sum(n for n, _ in got) + options
            parts.extend(got)
        if msg.error is not None:
            self.status.skip(exp, f"v{version}_{msg.error.reason}")
        self._sequence_templated(exp, c, msg, records, held_back)
        return parts

    def _records(self, key: TemplateKey, template: Template, data: bytes, start: int, end: int,
                 export_us: int, uptime_ms: int | None) -> tuple[list[Part], int]:
        """Flow parts of one data set, and how many options records it held."""
        exp, version, domain, _ = key
        try:
            if template.is_options:
                n, values = decode_set(template, data, start, end, OPTIONS_WANTED)
                self.sampling.learn(exp, version, domain, values, n)
                self.sampling.learn_init_time(exp, version, domain, values)
                return [], n
            n, values = decode_set(template, data, start, end, WANTED)
        except RecordError:
            self.status.skip(exp, f"v{version}_bad_data_set")
            return [], 0
        if n == 0:
            return [], 0
        cols = flow_columns(values, n, version=version, export_us=export_us, uptime_ms=uptime_ms,
                            init_ms=self.sampling.init_time(exp, version, domain))
        rates = self.sampling.for_records(exp, version, domain, values, n)
        cols["sampling_rate"] = np.minimum(rates, np.uint64(0xFFFFFFFF)).astype(np.uint32)
        return [(n, cols)], 0

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
