"""The service: everything ``flowatlas serve`` runs over one store, owned by one object.

A :class:`Service` owns the :class:`~flowatlas.atlas.Atlas` (store and engine, built from the
settings), the control plane, the :class:`~flowatlas.governance.gate.Gate`, the collector thread
and the maintenance schedule. Front ends hang off it and never build those parts themselves:

- the HTTP API is ``flowatlas.api.app.create_app(service)``;
- the web console (issue 13) is a router that ``create_app`` includes from the same service, so
  every page goes through ``service.gate`` exactly as the API routes do;
- the job runner (issue 14) is a :class:`Component` attached with :meth:`Service.attach`: the
  service starts it after the collector and the maintenance thread and stops it before them;
  it runs queued work through ``service.atlas`` and ``service.gate`` and keeps its queue in
  ``service.control``.

``start()`` launches the background threads, ``stop()`` ends them and closes what the service
opened; the service is also a context manager. A service that was never started is still a
complete container for tests and one-shot tools (``create_app`` needs no threads).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from flowatlas.atlas import Atlas
from flowatlas.collect.status import STATUS_FILE as COLLECTOR_STATUS_FILE
from flowatlas.governance.audit import AuditLog
from flowatlas.governance.controlplane import ControlPlane
from flowatlas.governance.gate import Gate
from flowatlas.settings import Settings, StoreSettings, load
from flowatlas.store import FlowStore

if TYPE_CHECKING:
    from flowatlas.collect.server import Collector, Listen
    from flowatlas.ingest import Pipeline


class ServiceError(RuntimeError):
    """The service cannot start as configured (a bad collect endpoint, a busy port...)."""


class Component(Protocol):
    """Something that runs with the service (a job runner): ``start`` is given the service and
    returns once it is running; ``stop`` ends it and returns once it has."""

    def start(self, service: Service) -> None: ...

    def stop(self) -> None: ...


def _stderr(message: str) -> None:
    print(f"flowatlas: {message}", file=sys.stderr, flush=True)


class Service:
    def __init__(self, store_path: str | Path, *, settings: Settings | None = None,
                 create: bool = False, collect: Sequence[str] = (),
                 clock: Callable[[], float] = time.time,
                 report: Callable[[str], None] = _stderr) -> None:
        """``settings``: None loads them for the store (docs/settings.md). The ``store`` section
        always comes from the store itself. ``collect``: UDP endpoints (``HOST:PORT``) the
        collector listens on once started. ``report``: where progress lines go."""
        from flowatlas.engines.duckdb import DuckDBEngine

        self.root = Path(store_path)
        settings = load(self.root).settings if settings is None else settings
        self.store = FlowStore(self.root, create=create)
        self.settings = replace(settings, store=StoreSettings(
            self.store.retention_days, self.store.ingest_compression))
        self.clock = clock
        self.report = report
        self.listens = self._parse_listens(collect)
        engine = self.settings.engine
        self.atlas = Atlas(self.store, DuckDBEngine(
            self.store, threads=engine.threads or None, memory_limit=engine.memory_limit))
        self.control = ControlPlane.for_store(self.root)
        self.gate = Gate(self.control, clock)
        self.audit = AuditLog(self.control, clock)
        self.collector: Collector | None = None
        self._collector_thread: threading.Thread | None = None
        self._maintenance_thread: threading.Thread | None = None
        self._maintenance_store: FlowStore | None = None
        self._components: list[Component] = []
        self._running: list[Component] = []
        self._started = False
        self._stopping = threading.Event()
        self._closed = False

    @property
    def collector_status_path(self) -> Path:
        """The JSON file the collector rewrites every few seconds (served to operators)."""
        return self.root / COLLECTOR_STATUS_FILE

    # -- lifecycle ----------------------------------------------------------------------------

    def attach(self, component: Component) -> Component:
        """Run ``component`` with the service: started by :meth:`start` after the collector
        and the maintenance thread (at once if the service runs already), stopped by
        :meth:`stop` before them, the last attached first."""
        if self._closed:
            raise ServiceError("the service is stopped")
        self._components.append(component)
        if self._started:
            self._start_component(component)
        return component

    def start(self, *, maintenance: bool = True) -> Service:
        """Start the collector (if endpoints were given), the maintenance schedule and the
        attached components."""
        if self._closed:
            raise ServiceError("the service is stopped")
        if self.listens and self.collector is None:
            self._start_collector()
        if maintenance and self._maintenance_thread is None:
            self._maintenance_thread = threading.Thread(
                target=self._maintenance_loop, name="flowatlas-maintenance", daemon=True)
            self._maintenance_thread.start()
        self._started = True
        for component in self._components:
            if component not in self._running:
                self._start_component(component)
        return self

    def _start_component(self, component: Component) -> None:
        component.start(self)
        self._running.append(component)

    def stop(self) -> None:
        """Stop the threads (the collector flushes what it holds), then close the store's
        engine and the control plane. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for component in reversed(self._running):
            try:
                component.stop()
            except Exception as exc:  # the rest must still stop and close
                self.report(f"stopping {type(component).__name__} failed: {exc}")
        self._running.clear()
        self._stopping.set()
        if self.collector is not None:
            self.collector.stop()
        if self._collector_thread is not None:
            self._collector_thread.join(30)
        if self._maintenance_thread is not None:
            self._maintenance_thread.join(30)
        self.atlas.close()
        self.control.close()

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- ingest -------------------------------------------------------------------------------

    def ingest_pipeline(self, store: FlowStore) -> Pipeline:
        """The stages collected flows pass before ``store`` keeps them (plausible times,
        opt-outs, sampling, enrichment), from the ``ingest`` settings on the service's clock.
        The one place the service chooses its ingest path."""
        from flowatlas.ingest import pipeline_for

        return pipeline_for(store, self.settings.ingest, clock=self.clock)

    # -- the collector ------------------------------------------------------------------------

    @staticmethod
    def _parse_listens(endpoints: Sequence[str]) -> list[Listen]:
        if not endpoints:
            return []
        try:
            from flowatlas.collect.server import Listen, ListenError
        except ImportError as exc:
            raise ServiceError(f"collect: the collector is not available in this build ({exc})"
                               ) from exc
        try:
            return [Listen.parse(e) for e in endpoints]
        except ListenError as exc:
            raise ServiceError(f"collect: {exc}") from exc

    def _start_collector(self) -> None:
        from flowatlas.collect.datagram import Decoder, StateLimits
        from flowatlas.collect.server import STATE_FILE, Collector, ListenError
        from flowatlas.governance.sources import SourceRegistry

        cfg = self.settings.collector
        started: queue.Queue[Collector | Exception] = queue.Queue(maxsize=1)

        def run() -> None:
            # Built on its own thread: the exporter registry's SQLite connection may only be
            # used by the thread that opened it.
            try:
                store = FlowStore(self.root)  # the collector's own handle, as before
                collector = Collector(
                    store, self.listens,
                    Decoder(SourceRegistry.for_store(self.root), self.root / STATE_FILE,
                            limits=StateLimits.of(cfg)),
                    max_rows=cfg.batch_rows, max_seconds=cfg.batch_seconds,
                    status_path=self.collector_status_path, receive_buffer=cfg.receive_buffer,
                    pipeline=self.ingest_pipeline(store),
                )
            except Exception as exc:  # reported by the starting thread
                started.put(exc)
                return
            started.put(collector)
            collector.run()

        thread = threading.Thread(target=run, name="flowatlas-collector", daemon=True)
        thread.start()
        got = started.get(timeout=60)
        if isinstance(got, ListenError):
            raise ServiceError(f"collect: {got}") from got
        if isinstance(got, Exception):
            raise got
        self.collector, self._collector_thread = got, thread
        self.report("collecting on " + ", ".join(f"{h}:{p}" for h, p in got.addresses))

    # -- maintenance --------------------------------------------------------------------------

    def maintain(self) -> None:
        """One maintenance pass: retention (each deletion audited), then compaction of the days
        that are due. Failures are reported and left for the next pass."""
        # Its own handle, as before the service existed: maintenance never shares the engine's.
        if self._maintenance_store is None:
            self._maintenance_store = FlowStore(self.root, create=False)
        store = self._maintenance_store
        # Retention first: a day about to expire is not worth compacting.
        try:
            days = store.retention()
        except Exception as exc:  # keep serving; report and try again next period
            self.report(f"retention failed: {exc}")
            days = []
        if days:
            self.audit.append(
                tenant=None, key_id=None, actor="retention", route="retention",
                params={"days": [d.isoformat() for d in days],
                        "retention_days": store.retention_days},
                purpose=None, rows=0, outcome="ok",
            )
        try:
            report = store.compact_due()
        except Exception as exc:
            self.report(f"compaction failed: {exc}")
            return
        if report.days:
            days_text = f"{report.days} day" + ("s" if report.days != 1 else "")
            self.report(f"compacted {report.rows:,} rows over {days_text} "
                        f"in {report.seconds:.1f}s")

    def _maintenance_loop(self) -> None:
        while not self._stopping.wait(self.settings.service.maintenance_seconds):
            self.maintain()
