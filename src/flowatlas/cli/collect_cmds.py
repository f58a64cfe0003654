"""``flowatlas collect`` (the UDP collector) and ``flowatlas sources add|list|remove``."""

from __future__ import annotations

import logging
import sys
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import pyarrow as pa

from flowatlas.addresses import unpack
from flowatlas.cli.common import InputError, format_option, render, store_option, user_errors
from flowatlas.collect.datagram import Decoder, StateLimits
from flowatlas.collect.server import STATE_FILE, Collector, CollectorFailed, Listen, ListenError
from flowatlas.collect.sources import BASES, SourceError
from flowatlas.collect.status import STATUS_FILE, CollectorStatus
from flowatlas.governance.changes import Actor
from flowatlas.governance.sources import SourceRegistry
from flowatlas.settings import SettingsError
from flowatlas.settings import load as load_settings
from flowatlas.store import FlowStore

if TYPE_CHECKING:
    from flowatlas.formats import OutputFormat


@click.command("collect")
@store_option
@click.option("--listen", "listens", multiple=True, default=("0.0.0.0:2055", "[::]:2055"),
              show_default=True,
              help="HOST:PORT, [V6]:PORT or PORT to receive on; repeat for several.")
@click.option("--accept-unregistered", is_flag=True,
              help="Store flows from every exporter (lab use); by default only registered "
                   "sources (see `flowatlas sources`) are stored.")
@click.option("--batch-rows", type=click.IntRange(1),
              help="Append to the store when this many rows are buffered (setting "
                   "collector.batch_rows, default 200000)...")
@click.option("--batch-seconds", type=click.FloatRange(0.05),
              help="...or when the oldest buffered row is this old (setting "
                   "collector.batch_seconds, default 2).")
@click.option("--state-dir", type=click.Path(file_okay=False),
              help="Where templates and live status are kept (default: the store).")
@click.option("--quiet", is_flag=True, help="No live status table on a terminal.")
@user_errors(ListenError, SourceError, SettingsError)
def collect(store_path: str, listens: tuple[str, ...], accept_unregistered: bool,
            batch_rows: int | None, batch_seconds: float | None, state_dir: str | None,
            quiet: bool) -> None:
    """Receive NetFlow v5/v9, IPFIX and sFlow v5 over UDP and write flows into the store.

    Runs until SIGTERM or Ctrl-C, then flushes what it holds and exits.
    """
    logging.basicConfig(level=logging.INFO, format="flowatlas collect: %(message)s")
    settings = load_settings(store_path).settings.collector
    store = FlowStore(store_path)
    state = Path(state_dir) if state_dir else Path(store_path)
    registry = None if accept_unregistered else SourceRegistry.for_store(store_path)
    if registry is not None and not registry.list():
        click.echo("flowatlas collect: no sources registered yet: flows are counted, not "
                   "stored, until `flowatlas sources add` (or use --accept-unregistered)",
                   err=True)
    decoder = Decoder(registry=registry, state_path=state / STATE_FILE,
                      limits=StateLimits.of(settings))
    collector = Collector(store, [Listen.parse(t) for t in listens], decoder,
                          max_rows=settings.batch_rows if batch_rows is None else batch_rows,
                          max_seconds=(settings.batch_seconds if batch_seconds is None
                                       else batch_seconds),
                          status_path=state / STATUS_FILE,
                          receive_buffer=settings.receive_buffer)
    collector.install_signals()
    where = ", ".join(f"{h} port {p}" for h, p in collector.addresses)
    granted = min(collector.receive_buffers) // 2 >> 20  # Linux reports double
    click.echo(f"flowatlas collect: listening on {where}; store {store_path}; "
               f"kernel receive buffer {granted} MiB per socket", err=True)
    failed: CollectorFailed | None = None
    try:
        if sys.stdout.isatty() and not quiet:
            _run_live(collector)
        else:
            collector.run()
    except CollectorFailed as exc:  # the store failed: say so, exit non-zero
        failed = exc
    totals = decoder.status.totals()
    click.echo(f"flowatlas collect: {'failed' if failed else 'stopped'}; "
               f"{collector.stored} flows stored, "
               f"{totals['packets']} datagrams, {totals['malformed']} malformed, "
               f"{totals['unregistered']} from unregistered exporters, "
               f"{totals['dropped']} dropped at ingest", err=True)
    if failed is not None:
        click.echo(f"flowatlas collect: {failed}", err=True)
        sys.exit(1)


def _run_live(collector: Collector) -> None:
    from rich.live import Live

    with Live(status_table(collector.decoder.status), refresh_per_second=2) as live:
        collector.run(tick=lambda c: live.update(status_table(c.decoder.status)))


def status_table(status: CollectorStatus) -> Any:
    from datetime import datetime

    from rich.table import Table

    table = Table(title="flowatlas collect", header_style="bold")
    for name in ("exporter", "packets", "records", "malformed", "unknown tpl", "seq gaps",
                 "lost", "sflow sample gaps", "sflow drops", "unregistered", "last seen"):
        table.add_column(name, justify="left" if name == "exporter" else "right")
    for exp, c in sorted(status.exporters.items()):
        seen = datetime.fromtimestamp(c.last_seen, UTC).strftime("%H:%M:%S")
        table.add_row(unpack(exp), *(f"{v:,}" for v in (
            c.packets, c.records, c.malformed, c.unknown_template, c.sequence_gaps, c.lost,
            c.sflow_sample_gaps, c.sflow_drops, c.unregistered)), seen)
    return table


@click.group("sources")
def sources() -> None:
    """The exporter registry: which exporters' flows are stored, as which source."""


@sources.command("add")
@store_option
@click.argument("prefix")
@click.option("--id", "source_id", required=True, type=int, help="Source id stored with flows.")
@click.option("--partner", required=True, help="Who operates the exporter.")
@click.option("--sampling", type=int, help="Sampling rate to use instead of the exporter's.")
@click.option("--basis", type=click.Choice(BASES), default="contract", show_default=True,
              help="The basis on which the partner shares the data.")
@user_errors(SourceError)
def sources_add(store_path: str, prefix: str, source_id: int, partner: str,
                sampling: int | None, basis: str) -> None:
    """Register an exporter address or PREFIX (e.g. 192.0.2.1 or 2001:db8::/48)."""
    reg = SourceRegistry.for_store(store_path, actor=Actor.cli(), create=False)
    s = reg.add(prefix, source_id, partner, sampling=sampling, basis=basis)
    click.echo(f"registered {s.prefix} as source {s.source_id} ({s.partner})")


@sources.command("list")
@store_option
@format_option
@user_errors(SourceError)
def sources_list(store_path: str, fmt: OutputFormat) -> None:
    """List registered exporters."""
    reg = SourceRegistry.for_store(store_path, create=False)
    rows = reg.list()
    table = pa.table({
        "prefix": pa.array([s.prefix for s in rows], pa.string()),
        "source_id": pa.array([s.source_id for s in rows], pa.uint32()),
        "partner": pa.array([s.partner for s in rows], pa.string()),
        "sampling": pa.array([s.sampling for s in rows], pa.uint32()),
        "basis": pa.array([s.basis for s in rows], pa.string()),
    })
    render(table, fmt, title="sources")


@sources.command("remove")
@store_option
@click.argument("prefix_or_id")
@user_errors(SourceError)
def sources_remove(store_path: str, prefix_or_id: str) -> None:
    """Remove a registered PREFIX, or every prefix of a source id."""
    reg = SourceRegistry.for_store(store_path, actor=Actor.cli(), create=False)
    if reg.remove(prefix_or_id) == 0:
        raise InputError(f"no registered source matches {prefix_or_id!r}")
    click.echo(f"removed {prefix_or_id}")


COMMANDS = [collect, sources]
