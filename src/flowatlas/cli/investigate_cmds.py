"""``flowatlas graph|beacons|victims|trace``: investigations (flowatlas.analytics) from the CLI."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from flowatlas.addresses import AddressError
from flowatlas.analytics.frame import AnalyticsError
from flowatlas.atlas import Atlas
from flowatlas.cli.common import (
    InputError,
    command_enricher,
    format_option,
    identified,
    output_option,
    render,
    store_option,
    user_errors,
    window_from,
    window_options,
)
from flowatlas.query.filter import FilterSyntaxError
from flowatlas.query.model import QueryError, Selection
from flowatlas.query.window import WindowError, parse_time
from flowatlas.ranges import NetClassError, NetClassTable
from flowatlas.store import FlowStore, StoreError

if TYPE_CHECKING:
    import pyarrow as pa

    from flowatlas.formats import OutputFormat

_USER_ERRORS = (AnalyticsError, NetClassError, StoreError, QueryError, AddressError, WindowError,
                FilterSyntaxError)


def _atlas(store_path: str) -> Atlas:
    return Atlas(FlowStore(store_path, create=False))


def _selection(filter_words: tuple[str, ...], since: str | None, until: str | None) -> Selection:
    return Atlas.select(" ".join(filter_words) or None, window_from(since, until))


def _netclass(path: str | None) -> NetClassTable | None:
    return NetClassTable.load(path) if path else None


def to_records(table: pa.Table) -> list[dict[str, Any]]:
    from flowatlas.formats import to_records as records

    return records(table)


def _json(obj: dict[str, Any]) -> None:
    """A JSON answer, with the ``enrichment`` field naming the data behind its identities."""
    obj = {**obj, "enrichment": command_enricher().field()}
    click.echo(json.dumps(obj, indent=1, default=str))


_netclass_option = click.option(
    "--netclass", type=click.Path(dir_okay=False),
    help="CSV of prefix,class[,asn] (e.g. the simulator's *.prefixes.csv).")


@click.command("graph")
@click.argument("addresses", nargs=-1, required=True)
@store_option
@window_options
@click.option("--hops", default=1, show_default=True, type=click.IntRange(1, 6))
@click.option("--max-degree", default=200, show_default=True, type=click.IntRange(1, 10_000_000),
              help="Fan-in/fan-out above which a node is a hub: kept as a leaf, not expanded.")
@click.option("--filter", "filter_text", default=None, help="Only flows matching this filter.")
@_netclass_option
@click.option("--nodes", "part", flag_value="nodes", help="Write the nodes table only.")
@click.option("--edges", "part", flag_value="edges", help="Write the edges table only.")
@output_option(extra=("graphml",))
@user_errors(*_USER_ERRORS)
def graph_cmd(addresses: tuple[str, ...], store_path: str, since: str | None,
              until: str | None, hops: int, max_degree: int, filter_text: str | None,
              netclass: str | None, part: str | None, fmt: OutputFormat) -> None:
    """Who talked to whom around ADDRESSES, up to --hops away.

    The terminal table and JSON show nodes and edges together; csv, ndjson, parquet and arrow
    write one table, chosen with --nodes or --edges (run twice for both).
    """
    from flowatlas.analytics.graph import peer_graph

    if fmt.name not in ("table", "json", "graphml") and part is None:
        raise InputError(f"-o {fmt.name} writes one table: add --nodes or --edges")

    with _atlas(store_path) as atlas:
        sel = Atlas.select(filter_text, window_from(since, until))
        g = peer_graph(atlas, list(addresses), sel, hops=hops, max_degree=max_degree,
                       netclass=_netclass(netclass))
    if g.edges.num_rows == 0:
        raise InputError(f"no flows touch {', '.join(addresses)} in this window")
    if fmt.name == "graphml":
        click.echo(g.to_graphml(), nl=False)
    elif fmt.name == "json":
        _json({**g.to_dict(), "nodes": to_records(identified(g.nodes, fmt)),
               "edges": to_records(identified(g.edges, fmt))})
    elif part is not None:
        render(getattr(g, part), fmt, title=part)
    else:
        render(g.nodes, fmt, title="nodes")
        render(g.edges, fmt, title="edges")


@click.command("beacons")
@click.argument("filter_words", nargs=-1)
@store_option
@window_options
@click.option("-n", "--top", "n", default=50, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--min-contacts", default=4, show_default=True, type=click.IntRange(4, 1_000_000))
@click.option("--min-score", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@format_option
@user_errors(*_USER_ERRORS)
def beacons_cmd(filter_words: tuple[str, ...], store_path: str, since: str | None,
                until: str | None, n: int, min_contacts: int, min_score: float,
                fmt: OutputFormat) -> None:
    """Rank (src, dst, dst port) pairs by how periodic their contact is (filter optional)."""
    from flowatlas.analytics.beacons import find_beacons

    with _atlas(store_path) as atlas:
        report = find_beacons(atlas, _selection(filter_words, since, until),
                              min_contacts=min_contacts, top=n, min_score=min_score)
    if report.flows == 0:
        raise InputError("no flows in this window/filter")
    if fmt.name == "json":
        _json({**report.to_dict(), "pairs": to_records(identified(report.to_table(), fmt))})
    else:
        render(report.to_table(), fmt, title=f"beacons over {report.flows:,} flows")


VICTIM_SUMMARY = ["peer", "c2", "label", "confidence", "class", "flows", "days", "first", "last",
                  "why"]


@click.command("victims")
@click.argument("c2", nargs=-1, required=True)
@store_option
@window_options
@_netclass_option
@click.option("--no-fanout", is_flag=True, help="Skip the fan-out query over the peers.")
@format_option
@user_errors(*_USER_ERRORS)
def victims_cmd(c2: tuple[str, ...], store_path: str, since: str | None, until: str | None,
                netclass: str | None, no_fanout: bool, fmt: OutputFormat) -> None:
    """Classify every peer of the C2 servers: victim, operator, scanner, researcher, ..."""
    from flowatlas.analytics.victims import classify_peers

    with _atlas(store_path) as atlas:
        report = classify_peers(atlas, list(c2), Atlas.select(None, window_from(since, until)),
                                netclass=_netclass(netclass), fanout=not no_fanout)
    if report.flows == 0:
        raise InputError(f"no flows touch {', '.join(c2)} in this window")
    if fmt.name == "json":
        _json({**report.to_dict(), "peers": to_records(identified(report.peers, fmt))})
    elif fmt.name == "table":  # the evidence columns (csv/ndjson/json) do not fit a terminal
        table = identified(report.to_table(), fmt)
        summary = [x for c in VICTIM_SUMMARY for x in
                   ((c, "peer_asn", "peer_country") if c == "peer" else (c,))
                   if x in table.column_names]
        render(table.select(summary), fmt,
               title=f"peers of {', '.join(report.c2)} (--format csv for every column)",
               identity=False)
    else:
        render(report.to_table(), fmt, title=f"peers of {', '.join(report.c2)}")


@click.command("trace")
@click.option("--to", "target", required=True, help="The target address the session reached.")
@click.option("--at", "at_text", required=True, help="When (ISO time, epoch, or 2h back).")
@click.option("--from-relay", help="The relay the session came from, if known.")
@click.option("--max-hops", default=16, show_default=True, type=click.IntRange(1, 64))
@click.option("--beam", default=3, show_default=True, type=click.IntRange(1, 20))
@click.option("--latency", default=5.0, show_default=True, type=click.FloatRange(0.001, 600),
              help="Latency bound per hop, seconds.")
@click.option("--ratio", default=2.0, show_default=True, type=click.FloatRange(1.01, 100),
              help="Volume ratio bound k: sizes must agree within [1/k, k].")
@click.option("--part", type=click.Choice(["candidates", "hops", "path"]), default="candidates",
              show_default=True, help="The one table csv, ndjson, parquet and arrow write.")
@store_option
@format_option
@user_errors(*_USER_ERRORS)
def trace_cmd(target: str, at_text: str, from_relay: str | None, max_hops: int, beam: int,
              latency: float, ratio: float, part: str, store_path: str,
              fmt: OutputFormat) -> None:
    """Walk a session reaching --to back through its relays, hop by hop."""
    from flowatlas.analytics.trace import TraceParams, trace

    at = parse_time(at_text)
    with _atlas(store_path) as atlas:
        report = trace(atlas, target, at, from_relay=from_relay,
                       params=TraceParams(max_hops=max_hops, beam=beam, latency_s=latency,
                                          ratio=ratio))
    from flowatlas.formats.reports import trace_document, trace_tables

    tables = {name: identified(t, fmt) for name, t in trace_tables(report).items()}
    if fmt.name == "json":
        _json(trace_document(report, tables))
        return
    if fmt.name != "table":
        render(tables[part], fmt)
        return
    doc = trace_document(report, tables)
    render(tables["candidates"], fmt, title="candidates per hop")
    render(tables["hops"], fmt, title="hops")
    click.echo("path: " + " -> ".join(r["addr"] for r in doc["path"] if r["alternative"] == 0))
    click.echo(f"confidence: {doc['confidence']}  stopped: {report.stopped}")


COMMANDS = [graph_cmd, beacons_cmd, victims_cmd, trace_cmd]
