"""Entry point: the ``flowatlas`` click group. Each command group lives in its own module.

The modules are imported only when their command runs: ``--version`` and ``--help`` must start
as fast as click itself, and a command module pulls in pyarrow, DuckDB, numpy or FastAPI. The
``--help`` listing comes from :data:`COMMANDS`, a static table of each command's module and
summary; ``tests/test_cli_lazy.py`` checks that it matches the real commands.
"""

from __future__ import annotations

import importlib
import sys
from typing import NamedTuple

import click

from flowatlas import __version__
from flowatlas.cli.common import run_cli


class Entry(NamedTuple):
    module: str
    summary: str
    """The command's short help (its first help paragraph), as ``--help`` lists it."""

    def short_help(self, limit: int) -> str:
        # A bare command with the same help text: click shortens it exactly as for the real one.
        return click.Command(None, help=self.summary).get_short_help_str(limit)


_Q = "flowatlas.cli.query_cmds"
_I = "flowatlas.cli.investigate_cmds"
_S = "flowatlas.cli.service_cmds"
_C = "flowatlas.cli.collect_cmds"

COMMANDS: dict[str, Entry] = {
    "audit": Entry(_S, "The tamper-evident audit log."),
    "beacons": Entry(_I, "Rank (src, dst, dst port) pairs by how periodic their contact is "
                         "(filter optional)."),
    "classes": Entry(_S, "The prefix-class table: residential/eyeball space is pseudonymised "
                         "for tenants."),
    "collect": Entry(_C, "Receive NetFlow v5/v9, IPFIX and sFlow v5 over UDP and write flows "
                         "into the store."),
    "enrich": Entry("flowatlas.cli.enrich_cmds", "AS number, AS name and country of addresses "
                    "(offline dataset; docs/enrichment.md)."),
    "graph": Entry(_I, "Who talked to whom around ADDRESSES, up to --hops away."),
    "import": Entry(_Q, "Import flows from CSV, NDJSON or nfdump CSV files into the store."),
    "ip": Entry(_Q, "Profile of ADDRESS (or prefix): first/last seen, totals, top peers and "
                    "ports, daily activity."),
    "keys": Entry(_S, "API keys: random, shown once, stored as hashes."),
    "optout": Entry(_S, "Opt-outs: prefixes/ASNs dropped at ingest and purged from history "
                        "(audited)."),
    "query": Entry(_Q, "Flows matching FILTER (nfdump syntax, e.g. 'src ip 10.0.0.1 and dst "
                       "port 443')."),
    "series": Entry(_Q, "Flows, packets and bytes per time bin."),
    "serve": Entry(_S, "Run the HTTP API (and the collector) over one store."),
    "settings": Entry(_S, "Every component's settings (store, collector, engine, service); see "
                          "docs/settings.md."),
    "simulate": Entry("flowatlas.cli.simulate_cmds", "Generate realistic flows with planted, "
                      "labelled investigations (deterministic per seed)."),
    "sources": Entry(_C, "The exporter registry: which exporters' flows are stored, as which "
                         "source."),
    "store": Entry("flowatlas.cli.store_cmds", "Inspect and maintain the flow store."),
    "tenants": Entry(_S, "Tenants of the service: roles, enterprise prefixes, quotas."),
    "top": Entry(_Q, "Top N values of a field, nfdump -s style (ip/port/as count both "
                     "endpoints)."),
    "trace": Entry(_I, "Walk a session reaching --to back through its relays, hop by hop."),
    "victims": Entry(_I, "Classify every peer of the C2 servers: victim, operator, scanner, "
                         "researcher, ..."),
}
"""Every top-level command: the module that defines it (in its ``COMMANDS`` list) and the
summary ``--help`` shows. A new command goes into its module's ``COMMANDS`` and here."""


def load(module: str) -> dict[str, click.Command]:
    """The commands a command module defines, by name (importing it)."""
    commands: list[click.Command] = importlib.import_module(module).COMMANDS
    return {c.name: c for c in commands if c.name}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is not None:
            return load(entry.module).get(cmd_name)
        # Not in the table: look through every module, so a command someone forgot to list
        # still runs (the table test names it); an unknown name stays click's usage error.
        for module in sorted({e.module for e in COMMANDS.values()}):
            found = load(module).get(cmd_name)
            if found is not None:
                return found
        return None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = [(n, COMMANDS[n].short_help(limit)) for n in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="flowatlas")
def cli() -> None:
    """flowatlas: collect, keep, query and investigate flow telemetry."""


def main() -> None:
    sys.exit(run_cli(cli))
