"""``flowatlas query|top|series|ip|import``: thin wrappers over :class:`flowatlas.atlas.Atlas`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import click

from flowatlas.addresses import AddressError, unpack_many
from flowatlas.atlas import Atlas
from flowatlas.cli.common import (
    InputError,
    command_enricher,
    display_zone,
    format_option,
    identified,
    output_option,
    render,
    store_option,
    user_errors,
    window_from,
    window_options,
    write_out,
)
from flowatlas.importers import IMPORT_FORMATS, ImportError_, import_file
from flowatlas.query.filter import FilterSyntaxError, parse_filter
from flowatlas.query.model import QueryError, Selection, parse_stat
from flowatlas.store import FlowStore, StoreError

if TYPE_CHECKING:
    import pyarrow as pa

    from flowatlas.formats import OutputFormat

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
@output_option(flows=True)
@click.option("-q", "--quiet", is_flag=True,
              help="No header line or summary (nfdump -q), for csv and the nfdump layouts.")
@user_errors(*_USER_ERRORS)
def query_cmd(filter_words: tuple[str, ...], store_path: str, since: str | None,
              until: str | None, limit: int, oldest_first: bool, aggregate_keys: str | None,
              aggregate_order: str, fmt: OutputFormat, quiet: bool) -> None:
    """Flows matching FILTER (nfdump syntax, e.g. 'src ip 10.0.0.1 and dst port 443').

    Every format but the terminal table streams batch by batch, so -n 10000000 -o csv runs in
    the memory of one batch.
    """
    from flowatlas.schema import FLOW_SCHEMA

    with _atlas(store_path) as atlas:
        sel = _selection(atlas, filter_words, since, until)
        if aggregate_keys:
            if fmt.is_layout:
                raise InputError(f"-A prints aggregated records, not flows: -o {fmt.name} "
                                 "lays out flows; use table, csv, json, ndjson, parquet or arrow")
            by_time = aggregate_order in ("tstart", "tend")
            order = {"tstart": "first", "tend": "last"}.get(aggregate_order, aggregate_order)
            table = atlas.top(sel, by=aggregate_keys, order=order, n=limit, rates=True,
                              ascending=by_time)
            render(table, fmt, title=f"{table.num_rows} aggregated records")
            return
        if fmt.name == "table":
            from flowatlas.formats import in_zone
            from flowatlas.formats.views import flow_view

            table = identified(atlas.flows(sel, limit=limit, oldest_first=oldest_first), fmt)
            render(flow_view(in_zone(table, display_zone())), fmt,
                   title=f"{table.num_rows} flows")
        else:
            write_out(atlas.iter_flows(sel, limit, oldest_first=oldest_first), fmt,
                      schema=FLOW_SCHEMA, header=not quiet)


@click.command("top")
@click.argument("filter_words", nargs=-1)
@store_option
@window_options
@click.option("-s", "--by", "stats", multiple=True, default=("ip",), show_default=True,
              help="Statistic, nfdump/SiLK style: FIELD[/ORDER] (ip/bytes, dstport/packets), "
                   "a comma list of fields (srcip,dstport), or a prefix roll-up (ip/24, "
                   "ip/24/48 = IPv4 /24 and IPv6 /48). Give -s again for another table.")
@click.option("--order", type=click.Choice(["flows", "packets", "bytes"]), default="flows",
              show_default=True, help="Rank by, unless -s gives /ORDER (-o is the output "
                                      "format, as in nfdump).")
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
            ipset_out: str | None, fmt: OutputFormat) -> None:
    """Top N values of a field, nfdump -s style (ip/port/as count both endpoints).

    Each value comes with its share of flows, packets and bytes, the running share (SiLK
    rwstats) and nfdump's pps/bps/bpp.
    """
    import pyarrow as pa

    if len(stats) > 1 and fmt.name in ("csv", "parquet", "arrow"):
        raise InputError(f"several -s need -o table, json or ndjson (each statistic has its own "
                         f"columns, so one {fmt.name} stream cannot hold them)")
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
        if len(tables) == 1 or fmt.name == "table":
            for spec, table in tables:
                render(table, fmt, title=f"top {n} {spec} by {parse_stat(spec).order or order}")
        elif fmt.name == "json":
            import json

            from flowatlas.formats import to_records

            click.echo(json.dumps({spec: to_records(identified(t, fmt)) for spec, t in tables},
                                  indent=1,
                                  default=str))
        else:
            for spec, table in tables:
                render(table.append_column("statistic", pa.array([spec] * table.num_rows)), fmt)


def write_ipset(table: pa.Table, path: str) -> int:
    """The address (or prefix) key of a top table, one per line; returns how many."""
    import pyarrow as pa

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
               until: str | None, bin_text: str, by: str | None, estimate: bool,
               fmt: OutputFormat) -> None:
    """Flows, packets and bytes per time bin."""
    with _atlas(store_path) as atlas:
        sel = _selection(atlas, filter_words, since, until)
        table = atlas.series(sel, parse_duration(bin_text), by=by, estimate=estimate)
        render(table, fmt, title="time series")


PROFILE_SECTIONS = ("totals", "peers", "local_ports", "peer_ports", "daily")


@click.command("ip")
@click.argument("address")
@click.argument("filter_words", nargs=-1)
@store_option
@window_options
@click.option("-n", "--top", "n", default=10, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--estimate", is_flag=True, help="Scale packets and bytes by the sampling rate.")
@click.option("--section", type=click.Choice(PROFILE_SECTIONS),
              help="The one table to write (needed by csv, ndjson, parquet and arrow).")
@format_option
@user_errors(*_USER_ERRORS)
def ip_cmd(address: str, filter_words: tuple[str, ...], store_path: str, since: str | None,
           until: str | None, n: int, estimate: bool, section: str | None,
           fmt: OutputFormat) -> None:
    """Profile of ADDRESS (or prefix): first/last seen, totals, top peers and ports, daily activity."""
    if fmt.name not in ("table", "json") and section is None:
        raise InputError(f"-o {fmt.name} writes one table: choose it with --section "
                         f"({', '.join(PROFILE_SECTIONS)})")
    with _atlas(store_path) as atlas:
        sel = _selection(atlas, filter_words, since, until)
        profile = atlas.profile(address, sel, n=n, estimate=estimate)
    names = (section,) if section else PROFILE_SECTIONS
    sections = {name: identified(getattr(profile, name), fmt) for name in names}
    from flowatlas.formats import iso, to_records

    own = own_identity(profile.address, fmt)
    if fmt.name == "json":
        import json

        doc = {"address": profile.address, "identity": own, "seen": profile.seen,
               "first_seen": iso(profile.first_seen), "last_seen": iso(profile.last_seen),
               **{k: to_records(v) for k, v in sections.items()},
               "enrichment": command_enricher().field()}
        click.echo(json.dumps(doc, indent=1, default=str))
    elif fmt.name == "table":
        who = ", ".join(x for x in (f"AS{own['asn']}" if own["asn"] else "", own["as_name"] or "",
                                    own["country"] or "") if x) or "no AS or country known"
        if not profile.seen:
            click.echo(f"{profile.address} ({who}): not seen in this window "
                       "(no flows to or from it)")
            return
        click.echo(f"{profile.address} ({who}): first seen {iso(profile.first_seen)}, "
                   f"last seen {iso(profile.last_seen)}")
        for name, table in sections.items():
            render(table, fmt, title=name)
    else:
        if not profile.seen:
            click.echo(f"{profile.address}: not seen in this window", err=True)
        render(sections[names[0]], fmt)


def own_identity(address: str, fmt: OutputFormat) -> dict[str, Any]:
    """AS number, AS name and country of a profile's address (of a prefix: of its first
    address)."""
    import pyarrow as pa

    from flowatlas.addresses import parse_prefix

    row = identified(pa.table({"ip": pa.array([parse_prefix(address).low], pa.binary(16))}),
                     fmt).to_pylist()[0]
    return {"asn": row.get("ip_asn"), "as_name": row.get("ip_as_name"),
            "country": row.get("ip_country")}


@click.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@store_option
@click.option("--input-format", "input_format", type=click.Choice(IMPORT_FORMATS), default="auto",
              show_default=True, help="csv/ndjson in canonical names, or nfdump's -o csv.")
@click.option("--compact/--no-compact", default=True, show_default=True,
              help="Lay the imported days out for lookups afterwards.")
@click.option("--create", is_flag=True,
              help="Create the store if there is none at --store (otherwise a missing store "
                   "is an error: a mistyped path must not become a new store).")
@user_errors(ImportError_, StoreError)
def import_cmd(files: tuple[str, ...], store_path: str, input_format: str, compact: bool,
               create: bool) -> None:
    """Import flows from CSV, NDJSON or nfdump CSV files into the store."""
    import os
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    try:
        store = FlowStore(store_path, create=create)
    except StoreError as exc:
        raise InputError(f"{exc}; add --create to make a new store there") from exc
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
