"""``flowatlas query|top|series|ip|import``: thin wrappers over :class:`flowatlas.atlas.Atlas`."""

from __future__ import annotations

import re

import click
import pyarrow as pa

from flowatlas.addresses import AddressError, unpack_many
from flowatlas.atlas import Atlas
from flowatlas.cli.common import (
    InputError,
    display_zone,
    format_option,
    render,
    render_rich,
    store_option,
    user_errors,
    window_from,
    window_options,
)
from flowatlas.formats import flow_lines, in_zone, to_records
from flowatlas.importers import IMPORT_FORMATS, ImportError_, import_file
from flowatlas.query.filter import FilterSyntaxError, parse_filter
from flowatlas.query.model import QueryError, Selection, parse_stat
from flowatlas.store import FlowStore, StoreError

_USER_ERRORS = (StoreError, QueryError, AddressError, ValueError)


def _atlas(store_path: str) -> Atlas:
    return Atlas(FlowStore(store_path, create=False))


def _selection(atlas: Atlas, filter_words: tuple[str, ...], since: str | None,
               until: str | None) -> Selection:
    text = " ".join(filter_words)
    try:
        # The command line may read ipset files; filters from the HTTP API may not.
        return atlas.select(parse_filter(text or None, read_files=True), window_from(since, until))
    except FilterSyntaxError as exc:
        raise InputError(f"{exc}\n  {exc.caret().replace(chr(10), chr(10) + '  ')}") from exc


def parse_duration(text: str) -> int:
    """``300``, ``5m``, ``1h``, ``1d`` to seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", text)
    if not m or int(m.group(1)) == 0:
        raise InputError(f"cannot read duration {text!r}: use e.g. 300, 5m, 1h or 1d")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


@click.command("query")
@click.argument("filter_words", nargs=-1)
@store_option
@window_options
@click.option("-n", "--limit", default=100, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option("--oldest-first", is_flag=True, help="Oldest flows first (default newest first).")
@click.option("-A", "--aggregate", "aggregate_keys", metavar="KEYS",
              help="nfdump -A: aggregate the flows on these keys (srcip,dstport; srcip/24 rolls "
                   "addresses up to prefixes) and print one record per group.")
@click.option("-O", "--order-by", "aggregate_order", default="tstart", show_default=True,
              type=click.Choice(["tstart", "tend", "flows", "packets", "bytes", "pps", "bps",
                                 "bpp"]),
              help="Order of the -A records (nfdump -O); tstart/tend oldest first, the rest "
                   "largest first.")
@format_option
@user_errors(*_USER_ERRORS)
def query_cmd(filter_words: tuple[str, ...], store_path: str, since: str | None,
              until: str | None, limit: int, oldest_first: bool, aggregate_keys: str | None,
              aggregate_order: str, fmt: str) -> None:
    """Flows matching FILTER (nfdump syntax, e.g. 'src ip 10.0.0.1 and dst port 443')."""
    with _atlas(store_path) as atlas:
        sel = _selection(atlas, filter_words, since, until)
        if aggregate_keys:
            by_time = aggregate_order in ("tstart", "tend")
            order = {"tstart": "first", "tend": "last"}.get(aggregate_order, aggregate_order)
            table = atlas.top(sel, by=aggregate_keys, order=order, n=limit, rates=True,
                              ascending=by_time)
            render(table, fmt, title=f"{table.num_rows} aggregated records")
            return
        table = atlas.flows(sel, limit=limit, oldest_first=oldest_first)
        shown = flow_lines(in_zone(table, display_zone())) if fmt == "table" else table
        render(shown, fmt, title=f"{table.num_rows} flows")


@click.command("top")
@click.argument("filter_words", nargs=-1)
@store_option
@window_options
@click.option("-s", "--by", "stats", multiple=True, default=("ip",), show_default=True,
              help="Statistic, nfdump/SiLK style: FIELD[/ORDER] (ip/bytes, dstport/packets), "
                   "a comma list of fields (srcip,dstport), or a prefix roll-up (ip/24, "
                   "ip/24/48 = IPv4 /24 and IPv6 /48). Give -s again for another table.")
@click.option("-o", "--order", type=click.Choice(["flows", "packets", "bytes"]), default="flows",
              show_default=True)
@click.option("-n", "--top", "n", default=10, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--estimate", is_flag=True, help="Scale packets and bytes by the sampling rate.")
@click.option("--distinct", "distinct", multiple=True, metavar="FIELD",
              help="Count distinct values of FIELD per group (SiLK rwuniq --values=distinct:); "
                   "e.g. --distinct dstip. Repeatable.")
@click.option("--ipset-out", "ipset_out", type=click.Path(dir_okay=False),
              help="Also write the listed addresses (or prefixes) to this file, one per line: "
                   "an address set the 'ipset FILE' filter term reads.")
@format_option
@user_errors(*_USER_ERRORS)
def top_cmd(filter_words: tuple[str, ...], store_path: str, since: str | None, until: str | None,
            stats: tuple[str, ...], order: str, n: int, estimate: bool, distinct: tuple[str, ...],
            ipset_out: str | None, fmt: str) -> None:
    """Top N values of a field, nfdump -s style (ip/port/as count both endpoints).

    Each value comes with its share of flows, packets and bytes, the running share (SiLK
    rwstats) and nfdump's pps/bps/bpp.
    """
    if len(stats) > 1 and fmt == "csv":
        raise InputError("several -s need --format table, json or ndjson (each statistic has "
                         "its own columns, so one CSV cannot hold them)")
    if len(stats) > 1 and ipset_out:
        raise InputError("--ipset-out takes one -s statistic")
    with _atlas(store_path) as atlas:
        sel = _selection(atlas, filter_words, since, until)
        tables = []
        for spec in stats:
            table = atlas.top(sel, by=spec, order=order, n=n, estimate=estimate, shares=True,
                              rates=True, distinct=distinct)
            tables.append((spec, table))
        if ipset_out:
            count = write_ipset(tables[0][1], ipset_out)
            click.echo(f"wrote {count} addresses to {ipset_out}", err=True)
        if len(tables) == 1 or fmt == "table":
            for spec, table in tables:
                render(table, fmt, title=f"top {n} {spec} by {parse_stat(spec).order or order}")
        elif fmt == "json":
            import json

            click.echo(json.dumps({spec: to_records(t) for spec, t in tables}, indent=1,
                                  default=str))
        else:
            for spec, table in tables:
                render(table.append_column("statistic", pa.array([spec] * table.num_rows)), fmt)


def write_ipset(table: pa.Table, path: str) -> int:
    """The address (or prefix) key of a top table, one per line; returns how many."""
    from flowatlas.schema import ADDRESS_COLUMNS

    keys = [c for c in table.column_names if c in ADDRESS_COLUMNS]
    if len(keys) != 1:
        raise InputError("--ipset-out needs a statistic with one address field (ip, srcip, "
                         f"dstip), not {', '.join(table.column_names[:2])}")
    column = table.column(keys[0])
    texts = column.to_pylist() if pa.types.is_string(column.type) else unpack_many(column)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("".join(f"{t}\n" for t in texts))
    return len(texts)


@click.command("series")
@click.argument("filter_words", nargs=-1)
@store_option
@window_options
@click.option("--bin", "bin_text", default="1h", show_default=True, help="Bin width: 5m, 1h, 1d...")
@click.option("--by", help="Split each bin by a field (e.g. proto, dst_port).")
@click.option("--estimate", is_flag=True, help="Scale packets and bytes by the sampling rate.")
@format_option
@user_errors(*_USER_ERRORS)
def series_cmd(filter_words: tuple[str, ...], store_path: str, since: str | None,
               until: str | None, bin_text: str, by: str | None, estimate: bool, fmt: str) -> None:
    """Flows, packets and bytes per time bin."""
    with _atlas(store_path) as atlas:
        sel = _selection(atlas, filter_words, since, until)
        table = atlas.series(sel, parse_duration(bin_text), by=by, estimate=estimate)
        render(table, fmt, title="time series")


@click.command("ip")
@click.argument("address")
@click.argument("filter_words", nargs=-1)
@store_option
@window_options
@click.option("-n", "--top", "n", default=10, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--estimate", is_flag=True, help="Scale packets and bytes by the sampling rate.")
@format_option
@user_errors(*_USER_ERRORS)
def ip_cmd(address: str, filter_words: tuple[str, ...], store_path: str, since: str | None,
           until: str | None, n: int, estimate: bool, fmt: str) -> None:
    """Profile of ADDRESS (or prefix): first/last seen, totals, top peers and ports, daily activity."""
    with _atlas(store_path) as atlas:
        sel = _selection(atlas, filter_words, since, until)
        profile = atlas.profile(address, sel, n=n, estimate=estimate)
        sections = {"totals": profile.totals, "peers": profile.peers,
                    "local_ports": profile.local_ports, "peer_ports": profile.peer_ports,
                    "daily": profile.daily}
        if not profile.seen:
            click.echo(f"no flows to or from {profile.address} in this window", err=True)
        if fmt == "json":
            import json

            doc = {"address": profile.address, "first_seen": _iso(profile.first_seen),
                   "last_seen": _iso(profile.last_seen),
                   **{k: to_records(v) for k, v in sections.items()}}
            click.echo(json.dumps(doc, indent=1, default=str))
        elif fmt == "table":
            click.echo(f"{profile.address}: first seen {_iso(profile.first_seen)}, "
                       f"last seen {_iso(profile.last_seen)}")
            for name, table in sections.items():
                render_rich(to_records(table), table.column_names, title=name)
        else:
            for name, table in sections.items():
                render(table.append_column("section", pa.array([name] * table.num_rows)), fmt)


def _iso(value: object) -> str | None:
    return None if value is None else str(value)


@click.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@store_option
@click.option("--input-format", "input_format", type=click.Choice(IMPORT_FORMATS), default="auto",
              show_default=True, help="csv/ndjson in canonical names, or nfdump's -o csv.")
@click.option("--compact/--no-compact", default=True, show_default=True,
              help="Lay the imported days out for lookups afterwards.")
@user_errors(ImportError_, StoreError)
def import_cmd(files: tuple[str, ...], store_path: str, input_format: str, compact: bool) -> None:
    """Import flows from CSV, NDJSON or nfdump CSV files into the store."""
    import os
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    store = FlowStore(store_path, create=True)
    total = sum(os.path.getsize(f) for f in files if os.path.isfile(f))
    rows = 0
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), transient=True, console=Console(stderr=True),
                  disable=not sys.stderr.isatty()) as progress:
        task = progress.add_task("importing", total=total)
        for path in files:
            report = import_file(store, path, input_format,
                                 progress=lambda size: progress.advance(task, size))
            rows += report.rows
            dropped = "".join(f", {n:,} not stored ({reason})"
                              for reason, n in sorted(report.dropped.items()))
            click.echo(f"{path}: {report.rows:,} flows ({report.format}){dropped}", err=True)
    if compact:
        report_c = store.compact()
        click.echo(f"compacted {report_c.runs_out} runs in {report_c.seconds:.1f}s", err=True)
    click.echo(f"imported {rows:,} flows into {store_path}")


COMMANDS = [query_cmd, top_cmd, series_cmd, ip_cmd, import_cmd]
